package gitstate

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestReflogsRoundTrip: after commits, a checkout of another branch and
// back, a commit a reset --hard HEAD~1 leaves reachable only from the
// reflog, and an incremental capture, the restored repository's reflogs of
// HEAD and main are the original's (dates included), `git checkout -` goes
// where it goes in the original, main@{1} resolves alike, and the
// reflog-only commit is there. A credential in a reflog message is not.
func TestReflogsRoundTrip(t *testing.T) {
	repo := newRepo(t)
	for i, m := range []string{"one", "two", "three"} {
		write(t, repo, "f", m+"\n")
		git(t, repo, "add", "f")
		git(t, repo, "commit", "-q", "-m", m, "--date", "2024-01-0"+string(rune('1'+i))+"T10:00:00Z")
	}
	git(t, repo, "checkout", "-q", "-b", "feature")
	write(t, repo, "g", "feature\n")
	git(t, repo, "add", "g")
	git(t, repo, "commit", "-q", "-m", "feature work")
	git(t, repo, "checkout", "-q", "main")
	e := newEnv(t)
	e.capture(repo)

	write(t, repo, "f", "four\n")
	// 256 KiB that do not compress: the third capture shows whether the
	// chain bundles it again.
	rnd := make([]byte, 256<<10)
	_, err := rand.Read(rnd)
	noErr(t, err)
	write(t, repo, "big", string(rnd))
	git(t, repo, "add", "big")
	git(t, repo, "commit", "-q", "-am", "pull https://agent:ghp_SECRETTOKEN1234567890@example.com/x")
	lost := strings.TrimSpace(git(t, repo, "rev-parse", "HEAD"))
	git(t, repo, "reset", "-q", "--hard", "HEAD~1")
	git(t, repo, "checkout", "-q", "feature")
	git(t, repo, "checkout", "-q", "main")
	res := e.capture(repo)
	if res.Full || res.Bundle == "" {
		t.Fatalf("second capture: full %v, bundle %q; want an incremental bundle", res.Full, res.Bundle)
	}
	if fileSize(e.bundles[1]) < 256<<10 {
		t.Fatalf("second bundle %d bytes: it cannot hold the reflog-only commit's file", fileSize(e.bundles[1]))
	}
	// Incremental: the next capture does not bundle the reflog-only commit again.
	write(t, repo, "f", "three, edited\n")
	if res := e.capture(repo); res.Full || len(e.bundles) != 3 || fileSize(e.bundles[2]) > 64<<10 {
		t.Fatalf("third capture after a one-line edit: full %v, bundles %d, last %d bytes", res.Full, len(e.bundles), fileSize(e.bundles[len(e.bundles)-1]))
	}
	b, err := json.Marshal(e.states[len(e.states)-1])
	noErr(t, err)
	if strings.Contains(string(b), "SECRETTOKEN") {
		t.Fatalf("the state holds the token of a reflog message")
	}
	out := e.restore()

	for _, v := range [][]string{
		{"reflog", "show", "HEAD"},
		{"reflog", "show", "main"},
		{"reflog", "show", "feature"},
		{"log", "-g", "--format=%H %gd %gs %ci %cn", "HEAD"},
		{"log", "-g", "--format=%H %gd %gs %ci %cn", "main"},
		{"rev-parse", "main@{1}", "HEAD@{2}", "@{-1}"},
	} {
		want := strings.ReplaceAll(git(t, repo, v...), "agent:ghp_SECRETTOKEN1234567890@", "")
		if got := git(t, out, v...); got != want {
			t.Errorf("git %s:\nrestored:\n%s\noriginal:\n%s", strings.Join(v, " "), got, want)
		}
	}
	if _, err := gitErr(out, nil, "cat-file", "-e", lost+"^{commit}"); err != nil {
		t.Errorf("the commit reachable only from the reflog (%s) is not in the restored repository: %v", lost, err)
	}
	git(t, repo, "checkout", "-q", "-")
	git(t, out, "checkout", "-q", "-")
	if a, b := git(t, repo, "rev-parse", "--abbrev-ref", "HEAD"), git(t, out, "rev-parse", "--abbrev-ref", "HEAD"); a != b {
		t.Errorf("git checkout - went to %s in the restored repository, %s in the original", b, a)
	}
	compareRepos(t, repo, out)
}

// TestStateWithoutReflogsRestores: a State written before reflogs were kept
// (no "reflogs" in its JSON) restores as it did: every ref has its one
// entry.
func TestStateWithoutReflogsRestores(t *testing.T) {
	repo := newRepo(t)
	write(t, repo, "f", "1\n")
	git(t, repo, "add", "f")
	git(t, repo, "commit", "-q", "-m", "one")
	write(t, repo, "f", "2\n")
	git(t, repo, "commit", "-q", "-am", "two")
	e := newEnv(t)
	e.capture(repo)
	st := e.states[0]
	if len(st.Reflogs) == 0 {
		t.Fatal("the capture kept no reflog")
	}
	b, err := json.Marshal(st)
	noErr(t, err)
	var old map[string]any
	noErr(t, json.Unmarshal(b, &old))
	delete(old, "reflogs")
	b, err = json.Marshal(old)
	noErr(t, err)
	var back State
	noErr(t, json.Unmarshal(b, &back))
	out := filepath.Join(t.TempDir(), "old")
	if err := Restore(context.Background(), out, &back, e.bundles); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(git(t, out, "reflog", "show", "main"), "\n"); got > 1 {
		t.Errorf("main has %d reflog entries after restoring a state without reflogs, want at most 1", got)
	}
	if a, b := git(t, repo, "rev-parse", "HEAD"), git(t, out, "rev-parse", "HEAD"); a != b {
		t.Errorf("HEAD %s, want %s", b, a)
	}
}

// TestReflogsValidated: reflogs read back from the store are hostile: a ref
// name that leaves logs/, an identity or a message that adds a line or a
// field, short ids, too many entries, a ref twice: Validate refuses each.
func TestReflogsValidated(t *testing.T) {
	repo := newRepo(t)
	write(t, repo, "f", "1\n")
	git(t, repo, "add", "f")
	git(t, repo, "commit", "-q", "-m", "one")
	e := newEnv(t)
	e.capture(repo)
	good := e.states[0]
	if err := good.Validate(); err != nil || len(good.Reflogs) == 0 {
		t.Fatalf("captured state: %v, %d reflogs", err, len(good.Reflogs))
	}
	entry := good.Reflogs[0].Entries[0]
	for name, mut := range map[string]func(st *State){
		"ref outside logs":   func(st *State) { st.Reflogs[0].Ref = "refs/../../config" },
		"ref not under refs": func(st *State) { st.Reflogs[0].Ref = "config" },
		"ref refs/stash":     func(st *State) { st.Reflogs[0].Ref = "refs/stash" },
		"ref twice":          func(st *State) { st.Reflogs = append(st.Reflogs, st.Reflogs[0]) },
		"newline in who":     func(st *State) { st.Reflogs[0].Entries[0].Who = "A <a@b> 1 +0000\n0000 1111" },
		"tab in who":         func(st *State) { st.Reflogs[0].Entries[0].Who = "A\t<a@b> 1 +0000" },
		"newline in message": func(st *State) { st.Reflogs[0].Entries[0].Message = "x\nfake line" },
		"short id":           func(st *State) { st.Reflogs[0].Entries[0].New = "abc" },
		"option as id":       func(st *State) { st.Reflogs[0].Entries[0].Old = "--output=/tmp/x" + strings.Repeat("0", 25) },
		"no entries":         func(st *State) { st.Reflogs[0].Entries = nil },
		"too many entries": func(st *State) {
			for i := 0; i <= MaxReflogEntries; i++ {
				st.Reflogs[0].Entries = append(st.Reflogs[0].Entries, entry)
			}
		},
		"too many bytes": func(st *State) {
			big := ReflogEntry{Old: entry.Old, New: entry.New, Who: entry.Who, Message: strings.Repeat("m", maxReflogLine)}
			for i := 0; i < 1100; i++ {
				st.Reflogs = append(st.Reflogs, Reflog{Ref: fmt.Sprintf("refs/heads/b%d", i), Entries: []ReflogEntry{big}})
			}
		},
	} {
		b, err := json.Marshal(good)
		noErr(t, err)
		var st State
		noErr(t, json.Unmarshal(b, &st))
		mut(&st)
		if err := st.Validate(); err == nil {
			t.Errorf("%s: Validate accepts it", name)
		}
		if err := Restore(context.Background(), filepath.Join(t.TempDir(), "r"), &st, e.bundles); err == nil {
			t.Errorf("%s: Restore accepts it", name)
		}
	}
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestReflogsBounded: a reflog longer than MaxReflogEntries keeps its
// newest entries, says so in a warning, and the kept lines are the file's
// last ones; a malformed line is skipped, not copied.
func TestReflogsBounded(t *testing.T) {
	repo := newRepo(t)
	write(t, repo, "f", "1\n")
	git(t, repo, "add", "f")
	git(t, repo, "commit", "-q", "-m", "one")
	head := strings.TrimSpace(git(t, repo, "rev-parse", "HEAD"))
	var b strings.Builder
	n := MaxReflogEntries + 500
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "%s %s A U Thor <a@example.com> %d +0000\tcheckout: moving from main to entry%d\n", head, head, 1700000000+i, i)
	}
	b.WriteString("garbage line\n")
	write(t, repo, ".git/logs/HEAD", b.String())
	e := newEnv(t)
	e.capture(repo)
	st := e.states[0]
	if st.Reflogs[0].Ref != "HEAD" || len(st.Reflogs[0].Entries) != MaxReflogEntries {
		t.Fatalf("HEAD's reflog: %s with %d entries, want HEAD with %d", st.Reflogs[0].Ref, len(st.Reflogs[0].Entries), MaxReflogEntries)
	}
	last := st.Reflogs[0].Entries[MaxReflogEntries-1]
	if last.Message != fmt.Sprintf("checkout: moving from main to entry%d", n-1) {
		t.Errorf("newest kept entry %q", last.Message)
	}
	warned := false
	for _, w := range st.Warnings {
		warned = warned || strings.Contains(w, "reflog of HEAD")
	}
	if !warned {
		t.Errorf("no warning of the dropped entries: %q", st.Warnings)
	}
	out := e.restore()
	if got := strings.Count(git(t, out, "reflog", "show", "HEAD"), "\n"); got != MaxReflogEntries {
		t.Errorf("restored HEAD reflog has %d entries, want %d", got, MaxReflogEntries)
	}
}
