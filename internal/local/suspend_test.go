package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A suspend stops the runner gracefully and asks for a snapshot; the sync
// and the session stay; a resume starts a new runner life. Neither is a
// death or a restart.
func TestSupervisorSuspendResume(t *testing.T) {
	cfg, out := fakeConfig(t, "sleep", 512<<20)
	cfg.MemoryMode = MemoryWatchdog
	cfg.ExitWhenIdle = false
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Resume(); !errors.Is(err, ErrNotSuspended) {
		t.Errorf("resume of a running session: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 30s\n%s", what, out.String())
			}
		}
	}
	lives := func() int {
		b, _ := os.ReadFile(filepath.Join(cfg.Workspace, ".tether/fake-lives"))
		return strings.Count(string(b), "\n")
	}
	state := func() string {
		st, err := ReadStatus(cfg.Workspace)
		if err != nil {
			return ""
		}
		return st.State
	}
	waitFor("the runner", func() bool {
		st, ok := readRunnerStatus(cfg.Workspace)
		return ok && st.RunnerPID != 0 && s.ctl.live.Load()
	})
	first, _ := readRunnerStatus(cfg.Workspace)
	if err := s.Suspend(); err != nil {
		t.Fatal(err)
	}
	waitFor("suspended", func() bool { return state() == StateSuspended })
	if err := s.Suspend(); !errors.Is(err, ErrSuspended) {
		t.Errorf("a second suspend: %v", err)
	}
	if rs, _ := readRunnerStatus(cfg.Workspace); rs.State != "stopped" {
		t.Errorf("the runner was not stopped gracefully: %s", rs.State)
	}
	if err := syscallKill0(first.RunnerPID); err == nil {
		t.Errorf("the first runner (pid %d) still runs", first.RunnerPID)
	}
	waitFor("the suspend's snapshot request", func() bool { return strings.Contains(fakeSyncLog(t, cfg.Workspace), `"reason":"suspended"`) })
	if sl := fakeSyncLog(t, cfg.Workspace); strings.Contains(sl, "final") {
		t.Errorf("the sync stopped with the runner: %s", sl)
	}

	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	waitFor("the second life", func() bool {
		st, ok := readRunnerStatus(cfg.Workspace)
		return lives() == 2 && ok && st.RunnerPID != first.RunnerPID && st.State == "ready" && state() == StateRunning
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st, _ := ReadStatus(cfg.Workspace)
	if len(st.Deaths) != 0 || st.Restarts != 0 || st.Runner.Life != 2 {
		t.Errorf("after a suspend and resume: deaths %d, restarts %d, life %d", len(st.Deaths), st.Restarts, st.Runner.Life)
	}
	if !strings.Contains(out.String(), "session suspended") || !strings.Contains(out.String(), "the session is resumed") {
		t.Errorf("the output does not say so:\n%s", out.String())
	}
}

func syscallKill0(pid int) error { return syscall.Kill(pid, 0) }

// The page's restore refuses the workspace however the directory is named:
// directly, below it, or through a symlink that points into it.
func TestRestoreDirInsideWorkspace(t *testing.T) {
	tmp := t.TempDir()
	ws := filepath.Join(tmp, "ws")
	if err := os.MkdirAll(filepath.Join(ws, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(ws, "sub"), filepath.Join(tmp, "link")); err != nil {
		t.Fatal(err)
	}
	for dir, inside := range map[string]bool{
		ws:                                   true,
		filepath.Join(ws, "new", "deeper"):   true,
		filepath.Join(tmp, "link", "x"):      true,
		filepath.Join(tmp, "link"):           true,
		filepath.Join(tmp, "elsewhere"):      false,
		filepath.Join(tmp, "wsx"):            false,
		filepath.Join(tmp, "ws", "..", "up"): false,
	} {
		if got := within(resolved(ws), resolved(dir)); got != inside {
			t.Errorf("%s inside the workspace: %v, want %v", dir, got, inside)
		}
	}
}
