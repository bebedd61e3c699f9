// Package agentwriter is the data-loss harnesses' stand-in for an agent: a
// loop that writes to a workspace like an agent does (a transcript, the
// session-id file, untracked binary files and commits in a repository) and
// logs every write, and the code that reads back which writes a restored
// workspace holds. The sync tests (internal/statesync) and the benchmark
// against the reference method (bench/compare) both kill it and compare.
package agentwriter

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tether-dev/tether/internal/fsutil"
)

// Paths inside the workspace the writer writes to.
const (
	Transcript = ".claude/projects/-ws/t.jsonl"
	SessionIDs = ".tether/session-ids.json"
	Repo       = "repos/app" // an existing git repository
)

// Kinds of writes in the log.
const (
	KindTranscript = "T" // a line appended to the transcript
	KindSessionID  = "S" // the session-id file rewritten atomically
	KindUntracked  = "R" // an untracked binary file in the repository
	KindCommit     = "C" // a commit in the repository
)

// Run writes like an agent until it is killed (it returns only on failure):
// every 10-50 ms a transcript line, every 5th time the session-id file,
// every 7th an untracked binary file, every 20th a commit of everything.
// After each write it appends "<kind> <seq> <unixnano>" to the log at
// logPath, which must be outside the workspace. seq numbers the writes; a
// restarted writer continues from the seq it is given.
func Run(ws, logPath string, seq int) error {
	logf, err := os.OpenFile(logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	record := func(kind string, n int) { fmt.Fprintf(logf, "%s %d %d\n", kind, n, time.Now().UnixNano()) }
	tr := filepath.Join(ws, Transcript)
	app := filepath.Join(ws, Repo)
	rng := rand.New(rand.NewSource(int64(seq)))
	for i := 0; ; i++ {
		seq++
		if err := appendLine(tr, fmt.Appendf(nil, `{"seq":%d,"text":"%x"}`+"\n", seq, rng.Int63())); err != nil {
			return err
		}
		record(KindTranscript, seq)
		if i%5 == 0 {
			if err := fsutil.WriteFileAtomic(filepath.Join(ws, SessionIDs), fmt.Appendf(nil, `{"main":"id-%d"}`, seq), 0o644); err != nil {
				return err
			}
			record(KindSessionID, seq)
		}
		if i%7 == 0 {
			if err := os.WriteFile(filepath.Join(app, fmt.Sprintf("untracked-%d.bin", seq)), []byte{byte(seq), 0, 1, 2, 0xff}, 0o644); err != nil {
				return err
			}
			record(KindUntracked, seq)
		}
		if i%20 == 0 {
			if err := git(app, "add", "-A"); err != nil {
				return err
			}
			if err := git(app, "commit", "-q", "--allow-empty", "-m", fmt.Sprintf("commit %d", seq)); err != nil {
				return err
			}
			record(KindCommit, seq)
		}
		time.Sleep(time.Duration(10+rng.Intn(40)) * time.Millisecond)
	}
}

// appendLine appends line to the file at p, or returns an error and leaves
// the file as it was: a line cut short by a full disk would glue itself to
// the next one, and the log would then claim writes the file cannot show.
func appendLine(p string, line []byte) error {
	f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(line); err != nil {
		_ = f.Truncate(fi.Size())
		f.Close()
		return fmt.Errorf("append to %s: %w", p, err)
	}
	return f.Close()
}

// GitEnv is the environment of the writer's git commands: a fixed identity,
// no user or system configuration.
func GitEnv() []string {
	return append(os.Environ(), "GIT_AUTHOR_NAME=w", "GIT_AUTHOR_EMAIL=w@example.com", "GIT_COMMITTER_NAME=w",
		"GIT_COMMITTER_EMAIL=w@example.com", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
}

func git(dir string, args ...string) error {
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = GitEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git %s: %v %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// Entry is one line of the writer's log.
type Entry struct {
	Kind string
	Seq  int
	At   time.Time
}

// ReadLog reads the writer's log; a last line cut by the kill is left out.
func ReadLog(p string) ([]Entry, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Entry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e Entry
		var ns int64
		if _, err := fmt.Sscanf(sc.Text(), "%s %d %d", &e.Kind, &e.Seq, &ns); err != nil {
			continue
		}
		e.At = time.Unix(0, ns)
		out = append(out, e)
	}
	return out, sc.Err()
}

// State is which of the writer's writes a (restored) workspace holds.
type State struct {
	Transcript map[int]bool
	SessionSeq int // seq of the session id in the file; 0 when there is none
	Untracked  map[int]bool
	Commits    map[int]bool
}

// Has reports whether the workspace holds the write e.
func (s *State) Has(e Entry) bool {
	switch e.Kind {
	case KindTranscript:
		return s.Transcript[e.Seq]
	case KindSessionID:
		return e.Seq <= s.SessionSeq
	case KindUntracked:
		return s.Untracked[e.Seq]
	case KindCommit:
		return s.Commits[e.Seq]
	}
	return false
}

// Window is the data-loss window of one kind of write: the age, at killedAt,
// of the oldest write of that kind in log made at or after since that the
// workspace does not hold; 0 when it holds them all.
func (s *State) Window(log []Entry, kind string, since, killedAt time.Time) time.Duration {
	for _, e := range log {
		if e.Kind == kind && !e.At.Before(since) && !s.Has(e) {
			return killedAt.Sub(e.At)
		}
	}
	return 0
}

// ReadState reads what the workspace at dir holds. A session-id file that is
// there but not valid JSON is an error: it was written atomically, so it can
// only be whole or absent.
func ReadState(dir string) (*State, error) {
	s := &State{Transcript: map[int]bool{}, Untracked: map[int]bool{}, Commits: map[int]bool{}}
	if data, err := os.ReadFile(filepath.Join(dir, Transcript)); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			var v struct{ Seq int }
			if json.Unmarshal([]byte(line), &v) == nil {
				s.Transcript[v.Seq] = true
			}
		}
	}
	if data, err := os.ReadFile(filepath.Join(dir, SessionIDs)); err == nil {
		var v map[string]string
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, fmt.Errorf("%s is torn: %q", SessionIDs, data)
		}
		s.SessionSeq, _ = strconv.Atoi(strings.TrimPrefix(v["main"], "id-"))
	}
	app := filepath.Join(dir, Repo)
	ents, _ := os.ReadDir(app)
	for _, e := range ents {
		if n, ok := strings.CutPrefix(e.Name(), "untracked-"); ok {
			k, _ := strconv.Atoi(strings.TrimSuffix(n, ".bin"))
			s.Untracked[k] = true
		}
	}
	if _, err := os.Stat(filepath.Join(app, ".git")); err == nil {
		g := exec.Command("git", "-C", app, "log", "--format=%s")
		g.Env = GitEnv()
		out, _ := g.Output()
		for _, line := range strings.Split(string(out), "\n") {
			if k, ok := strings.CutPrefix(line, "commit "); ok {
				n, _ := strconv.Atoi(k)
				s.Commits[n] = true
			}
		}
	}
	return s, nil
}
