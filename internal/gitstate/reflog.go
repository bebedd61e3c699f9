package gitstate

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
)

// Reflog is the reflog of one ref ("HEAD" or a full ref name), oldest entry
// first. Without it a restored repository has one entry per ref, and
// `git checkout -`, main@{1} and commits reachable only from a reflog (the
// one a `reset --hard HEAD~1` left behind) are gone.
type Reflog struct {
	Ref     string        `json:"ref"`
	Entries []ReflogEntry `json:"entries"`
}

// ReflogEntry is one line of a reflog: the ref moved from Old to New (all
// zeros for none), by Who ("Name <email> 1700000000 +0000", as git wrote
// it), for Message.
type ReflogEntry struct {
	Old     string `json:"old"`
	New     string `json:"new"`
	Who     string `json:"who"`
	Message string `json:"message,omitempty"`
}

// Reflogs are bounded, as everything read from the repository: an agent's
// loop of checkouts must not grow every State without end. The newest
// entries are kept.
const (
	// MaxReflogEntries is the number of entries kept per ref.
	MaxReflogEntries = 1000
	// MaxReflogBytes bounds all reflogs of a State together (their lines
	// as git writes them).
	MaxReflogBytes = 4 << 20
	// maxReflogLine bounds one entry: longer ones are dropped.
	maxReflogLine = 4096
)

// reflogWho is the identity and time field of a reflog line.
var reflogWho = regexp.MustCompile(`^[^<>\n\t\x00]* <[^<>\n\t\x00]*> [0-9]{1,20} [+-][0-9]{4}$`)

// readReflogs reads the reflogs of HEAD and of refs (not refs/stash, which
// State.Stash holds), newest entries first within the byte budget, and
// warns in st of what the bounds dropped. A reflog that cannot be read is
// skipped: it costs the history of one ref, never the capture.
func (c *capturer) readReflogs(st *State) {
	budget := MaxReflogBytes
	hexLen := 40
	if c.repo.format == "sha256" {
		hexLen = 64
	}
	names := []string{"HEAD"}
	for _, r := range st.Refs {
		if r.Name != "refs/stash" && validRefName(r.Name) {
			names = append(names, r.Name)
		}
	}
	for _, name := range names {
		dir := c.repo.commonDir
		if name == "HEAD" {
			dir = c.repo.gitDir
		}
		lines, total := readReflogTail(filepath.Join(dir, "logs", filepath.FromSlash(name)))
		var keep []ReflogEntry
		for i := len(lines) - 1; i >= 0 && len(keep) < MaxReflogEntries; i-- {
			e, ok := parseReflogLine(lines[i], hexLen)
			if !ok {
				continue
			}
			n := len(e.Old) + len(e.New) + len(e.Who) + len(e.Message) + 4
			if n > budget {
				break
			}
			budget -= n
			keep = append(keep, e)
		}
		if len(keep) == 0 {
			continue
		}
		for i, j := 0, len(keep)-1; i < j; i, j = i+1, j-1 {
			keep[i], keep[j] = keep[j], keep[i]
		}
		if len(keep) < total {
			st.Warnings = append(st.Warnings, fmt.Sprintf("reflog of %s: the newest %d of %d entries are kept (tether keeps at most %d per ref and %d bytes in all)", name, len(keep), total, MaxReflogEntries, MaxReflogBytes))
		}
		st.Reflogs = append(st.Reflogs, Reflog{Ref: name, Entries: keep})
	}
}

// readReflogTail returns the complete lines of the last part of a reflog
// file (a regular file only, never through a symlink) and how many lines it
// holds there.
func readReflogTail(p string) ([]string, int) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return nil, 0
	}
	off := fi.Size() - MaxReflogBytes
	if off < 0 {
		off = 0
	}
	b := make([]byte, fi.Size()-off)
	n, err := f.ReadAt(b, off)
	if err != nil && err != io.EOF {
		return nil, 0
	}
	b = b[:n]
	if off > 0 {
		// The first line is cut; it is among the oldest, past the budget.
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return nil, 0
	}
	return lines, len(lines)
}

// parseReflogLine parses "<old> <new> <who>\t<message>" with ids of hexLen
// digits, and removes credentials from the message.
func parseReflogLine(line string, hexLen int) (ReflogEntry, bool) {
	if len(line) > maxReflogLine || len(line) < 2*hexLen+2 {
		return ReflogEntry{}, false
	}
	head, msg, _ := strings.Cut(line, "\t")
	e := ReflogEntry{Old: head[:hexLen], Message: sanitizeLine(msg)}
	if head[hexLen] != ' ' || len(head) < 2*hexLen+2 || head[2*hexLen+1] != ' ' {
		return ReflogEntry{}, false
	}
	e.New, e.Who = head[hexLen+1:2*hexLen+1], head[2*hexLen+2:]
	if !isHex(e.Old) || !isHex(e.New) || !reflogWho.MatchString(e.Who) || !validReflogMessage(e.Message) {
		return ReflogEntry{}, false
	}
	return e, true
}

func validReflogMessage(m string) bool {
	return len(m) <= maxReflogLine && !strings.ContainsAny(m, "\n\r\x00")
}

// reflogIDs returns the commits st's reflogs name, for the bundle to keep:
// a commit reachable only from a reflog is otherwise not in it.
func reflogIDs(st *State) []string {
	zero := strings.Repeat("0", len(st.Snapshot))
	var ids []string
	for _, l := range st.Reflogs {
		for _, e := range l.Entries {
			for _, id := range []string{e.Old, e.New} {
				if id != zero {
					ids = append(ids, id)
				}
			}
		}
	}
	return ids
}

// validateReflogs checks reflogs read from a State as hostile input: refs
// HEAD or ones git could write, each once, ids full object ids, identity
// and message fields that cannot add a line or field, and the bounds
// Capture keeps.
func validateReflogs(st *State, hexLen int) error {
	seen := map[string]bool{}
	total := 0
	for _, l := range st.Reflogs {
		if l.Ref != "HEAD" && !validRefName(l.Ref) || l.Ref == "refs/stash" {
			return fmt.Errorf("state holds a reflog of an invalid ref %q", truncate(l.Ref, 200))
		}
		if seen[l.Ref] {
			return fmt.Errorf("state holds the reflog of %s twice", l.Ref)
		}
		seen[l.Ref] = true
		if len(l.Entries) == 0 || len(l.Entries) > MaxReflogEntries {
			return fmt.Errorf("state holds %d reflog entries for %s; tether keeps 1 to %d", len(l.Entries), l.Ref, MaxReflogEntries)
		}
		for _, e := range l.Entries {
			if len(e.Old) != hexLen || !isHex(e.Old) || len(e.New) != hexLen || !isHex(e.New) {
				return fmt.Errorf("state holds a reflog entry of %s whose ids are not full %d-digit object ids", l.Ref, hexLen)
			}
			if len(e.Who) > maxReflogLine || !reflogWho.MatchString(e.Who) || !validReflogMessage(e.Message) {
				return fmt.Errorf("state holds a malformed reflog entry of %s (identity %q)", l.Ref, truncate(e.Who, 80))
			}
			total += len(e.Old) + len(e.New) + len(e.Who) + len(e.Message) + 4
		}
	}
	if total > MaxReflogBytes {
		return fmt.Errorf("state holds %d bytes of reflogs; tether keeps at most %d", total, MaxReflogBytes)
	}
	return nil
}

// writeReflogs replaces the reflogs the restore's own ref updates wrote by
// the captured ones. Validate has checked every field; a reflog that cannot
// be written (a ref name that is a directory of another's) is skipped with
// a warning.
func writeReflogs(gitDir string, st *State, warn func(string)) {
	for _, l := range st.Reflogs {
		var b strings.Builder
		for _, e := range l.Entries {
			fmt.Fprintf(&b, "%s %s %s\t%s\n", e.Old, e.New, e.Who, e.Message)
		}
		p := filepath.Join(gitDir, "logs", filepath.FromSlash(l.Ref))
		err := os.MkdirAll(filepath.Dir(p), 0o755)
		if err == nil {
			err = os.WriteFile(p, []byte(b.String()), 0o644)
		}
		if err != nil {
			warn(fmt.Sprintf("git repository %s: reflog of %s not restored: %v", filepath.Dir(gitDir), l.Ref, err))
		}
	}
}

// validRefName accepts a full ref name git could have written (the names go
// into update-ref's line-oriented input and become paths under logs/).
func validRefName(name string) bool {
	return strings.HasPrefix(name, "refs/") && !strings.ContainsAny(name, " \t\n\r\x00~^:?*[\\") && !strings.Contains(name, "..") &&
		!strings.Contains(name, "//") && !strings.HasSuffix(name, "/") && !strings.HasSuffix(name, ".lock")
}
