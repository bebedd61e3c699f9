//go:build unix

package gitstate

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/gitstate/gittest"
)

// childEnv makes the test binary a capture loop, for the kill test.
const childEnv = "GITSTATE_TEST_CHILD"

// childMain captures the repository named in the environment over and over
// until it is killed.
func childMain() int {
	var prev State
	b, err := os.ReadFile(os.Getenv("GITSTATE_PREV"))
	if err == nil {
		err = json.Unmarshal(b, &prev)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	opts := CaptureOptions{ObjectDir: os.Getenv("GITSTATE_OBJECTS"), ScratchDir: os.Getenv("GITSTATE_SCRATCH")}
	for {
		res, err := Capture(context.Background(), os.Getenv("GITSTATE_REPO"), &prev, opts)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		os.Remove(res.Bundle)
	}
}

func TestKilledCaptureLeavesRepoUntouched(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("kill test skipped in -short mode")
	}
	repo := newRepo(t)
	gittest.ManyFiles(t, repo, 2000, 500)
	e := newEnv(t)
	e.capture(repo)
	// Changes that make a capture take a while: a large untracked file.
	big := make([]byte, 16<<20)
	rand.New(rand.NewSource(3)).Read(big)
	os.WriteFile(filepath.Join(repo, "big-untracked.bin"), big, 0o644)
	write(t, repo, "pkg01/sub00/file00001.go", "changed\n")
	write(t, repo, "staged.txt", "staged\n")
	git(t, repo, "add", "staged.txt")
	before := fingerprint(t, repo)

	prevFile := filepath.Join(t.TempDir(), "prev.json")
	b, _ := json.Marshal(e.states[0])
	os.WriteFile(prevFile, b, 0o644)
	for _, delay := range []time.Duration{10, 40, 80, 150, 250, 400, 700} {
		delay *= time.Millisecond
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=1", "GITSTATE_PREV="+prevFile, "GITSTATE_REPO="+repo,
			"GITSTATE_OBJECTS="+e.objects, "GITSTATE_SCRATCH="+e.scratch)
		// Its own process group, killed whole like an OOM-killed container.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("child was not killed by the signal (%v): %s", err, stderr.String())
		}
		diffFingerprints(t, before, fingerprint(t, repo))
	}
	// The next capture works on top of the killed ones' leftovers.
	res := e.capture(repo)
	if res.Full {
		t.Error("capture after killed captures is full")
	}
	compareRepos(t, repo, e.restore())
}

// TestCaptureRacingCommits captures while the agent commits, amends and
// switches branches in a loop: the user's repository must stay sound and
// every capture must restore to exactly what it recorded.
func TestCaptureRacingCommits(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("race test skipped in -short mode")
	}
	repo := newRepo(t)
	gittest.ManyFiles(t, repo, 300, 200)
	e := newEnv(t)
	e.concurrent = true
	var wg sync.WaitGroup
	done := make(chan struct{})
	errc := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		for i := 0; i < 40; i++ {
			f := filepath.Join(repo, fmt.Sprintf("work/f%d.txt", i%7))
			os.MkdirAll(filepath.Dir(f), 0o755)
			os.WriteFile(f, []byte(fmt.Sprintf("change %d\n", i)), 0o644)
			args := [][]string{{"add", "-A"}, {"commit", "-q", "-m", fmt.Sprintf("c%d", i)}}
			switch i % 10 {
			case 3:
				args = [][]string{{"commit", "-q", "-a", "--amend", "-m", fmt.Sprintf("amend %d", i)}}
			case 6:
				args = append(args, []string{"checkout", "-q", "-B", fmt.Sprintf("b%d", i%3)})
			case 9:
				args = [][]string{{"add", "work"}}
			}
			for _, a := range args {
				if _, err := gitErr(repo, nil, a...); err != nil {
					select {
					case errc <- err:
					default:
					}
					return
				}
			}
		}
	}()
	var chains [][]string
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		e.capture(repo)
		chains = append(chains, append([]string{}, e.bundles...))
	}
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatalf("the agent's git command failed during captures: %v", err)
	default:
	}
	git(t, repo, "fsck", "--no-progress", "--strict")
	t.Logf("%d captures while committing", len(e.states))
	for i, st := range e.states {
		dir := filepath.Join(t.TempDir(), "r")
		if err := Restore(context.Background(), dir, st, chains[i]); err != nil {
			t.Fatalf("capture %d does not restore: %v", i+1, err)
		}
		checkRestoredMatchesState(t, dir, st)
	}
	e.concurrent = false
	e.capture(repo)
	compareRepos(t, repo, e.restore())
}

// checkRestoredMatchesState checks HEAD, index and working tree of a restored
// repository against the state it was restored from.
func checkRestoredMatchesState(t *testing.T, dir string, st *State) {
	t.Helper()
	if got := strings.TrimSpace(git(t, dir, "rev-parse", "-q", "--verify", "HEAD")); got != st.Head.Commit {
		t.Errorf("restored HEAD %s, state %s", got, st.Head.Commit)
	}
	if got := strings.TrimSpace(git(t, dir, "write-tree")); got != st.StagedTree {
		t.Errorf("restored index is tree %s, state %s", got, st.StagedTree)
	}
	idx := filepath.Join(t.TempDir(), "index")
	env := []string{"GIT_INDEX_FILE=" + idx}
	if _, err := gitErr(dir, env, "add", "-A"); err != nil {
		t.Fatal(err)
	}
	wt, err := gitErr(dir, env, "write-tree")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(wt) != st.WorktreeTree {
		t.Errorf("restored working tree is tree %s, state %s", strings.TrimSpace(wt), st.WorktreeTree)
	}
}

// TestRepoOwnedByAnotherUser is the sync sidecar running as another user
// than the agent: git's "dubious ownership" check must not stop a capture.
func TestRepoOwnedByAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the repository to another user")
	}
	repo := newRepo(t)
	gittest.OrdinaryChanges(t, repo)
	chown := func(uid int) {
		if err := filepath.Walk(repo, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, uid, uid)
		}); err != nil {
			t.Fatal(err)
		}
	}
	chown(65534)
	if _, err := gitErr(repo, nil, "status"); err == nil || !strings.Contains(err.Error(), "dubious ownership") {
		t.Fatalf("plain git does not refuse the repository (%v); the test would prove nothing", err)
	}
	e := newEnv(t)
	e.capture(repo)
	dir := e.restore()
	// Compare as the owner would see it (the test's git refuses otherwise).
	chown(0)
	compareRepos(t, repo, dir)
}
