package local

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/runner"
)

// syncBuffer is a goroutine-safe terminal.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
	t  *testing.T
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.t.Logf("term: %s", strings.TrimRight(string(p), "\n"))
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func fakeConfig(t *testing.T, plan string, limit int64) (Config, *syncBuffer) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{t: t}
	return Config{
		Workspace:    t.TempDir(),
		Namespace:    "default",
		Session:      "sup-test",
		StoreURL:     "file://" + t.TempDir(),
		Self:         self,
		Env:          []string{"TETHER_TEST_FAKE=1", "TETHER_FAKE_PLAN=" + plan},
		MemoryLimit:  limit,
		MaxRestarts:  5,
		BackoffBase:  20 * time.Millisecond,
		LogDir:       t.TempDir(),
		Out:          out,
		ExitWhenIdle: true,
	}, out
}

func runSupervisor(t *testing.T, cfg Config) (*Status, error) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = s.Run(ctx)
	st, rerr := ReadStatus(cfg.Workspace)
	if rerr != nil {
		t.Fatalf("supervisor.json: %v", rerr)
	}
	return st, err
}

func fakeSyncLog(t *testing.T, ws string) string {
	b, _ := os.ReadFile(filepath.Join(ws, ".tether/fake-sync.log"))
	return string(b)
}

// checkOOMRecovery runs plan "hog,done" and checks the whole story in
// supervisor.json and around it.
func checkOOMRecovery(t *testing.T, mode, wantCause string) {
	cfg, out := fakeConfig(t, "hog,done", 96<<20)
	cfg.MemoryMode = mode
	cfg.OOMBump, cfg.MemoryMax = 1.5, 128<<20
	st, err := runSupervisor(t, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if st.State != StateStopped || st.Restarts != 1 || len(st.Deaths) != 1 {
		t.Fatalf("status: state %s, restarts %d, deaths %+v", st.State, st.Restarts, st.Deaths)
	}
	d := st.Deaths[0]
	if d.Cause != wantCause {
		t.Errorf("cause %q, want %q (%s)", d.Cause, wantCause, d.Detail)
	}
	if d.Signal != "SIGKILL" || d.OOMDetectedAt == nil || d.GroupKilledAt == nil {
		t.Errorf("death record: %+v", d)
	}
	if !d.TurnOpen || d.SessionID != "fake-session" {
		t.Errorf("the death should be recorded mid-turn with the session id: %+v", d)
	}
	if !d.Restart || d.NextMemoryLimit != 128<<20 || d.MemoryLimit != 96<<20 {
		t.Errorf("restart %v, limit %d -> %d; want 96 MiB -> 128 MiB (1.5x capped by --memory-max)", d.Restart, d.MemoryLimit, d.NextMemoryLimit)
	}
	if d.RecoveredAt == nil || d.Resume != runner.ResumeResumed || d.SessionIDAfter != "fake-session" {
		t.Errorf("recovery not recorded: %+v", d)
	}
	if st.Memory.Mode == "" || st.Memory.Limit != 128<<20 {
		t.Errorf("memory status %+v", st.Memory)
	}
	// The sync was asked for a snapshot after the death, kept running
	// (one sync for both lives), and took its final snapshot last.
	sl := fakeSyncLog(t, cfg.Workspace)
	if strings.Count(sl, "start ") != 1 || !strings.Contains(sl, `"reason":"runner-died"`) || !strings.HasSuffix(sl, "final\n") {
		t.Errorf("sync log:\n%s", sl)
	}
	for _, want := range []string{"RUNNER DIED", "recovered", "final snapshot done"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("terminal lacks %q", want)
		}
	}
	t.Logf("detected %s; OOM -> group dead %v; death -> ready %d ms", d.Detail, d.GroupKilledAt.Sub(*d.OOMDetectedAt), d.RecoveryMs)
}

func TestSupervisorKernelOOMRestartsResumedWithBump(t *testing.T) {
	needCgroup(t, 64<<20).Close()
	checkOOMRecovery(t, MemoryCgroup, CauseOOMKernel)
}

func TestSupervisorWatchdogOOM(t *testing.T) {
	checkOOMRecovery(t, MemoryWatchdog, CauseOOMWatchdog)
}

// Exit codes are classified, restarts back off exponentially, and the
// supervisor gives up after --max-restarts with an error that says so, still
// taking the final snapshot.
func TestSupervisorMaxRestarts(t *testing.T) {
	cfg, _ := fakeConfig(t, "exit3", 512<<20)
	cfg.MaxRestarts = 3
	cfg.MemoryMode = MemoryWatchdog
	st, err := runSupervisor(t, cfg)
	if err == nil || !strings.Contains(err.Error(), "--max-restarts 3 reached") {
		t.Fatalf("Run: %v", err)
	}
	if len(st.Deaths) != 4 || st.Restarts != 3 || st.State != StateFailed {
		t.Fatalf("deaths %d restarts %d state %s", len(st.Deaths), st.Restarts, st.State)
	}
	for i, d := range st.Deaths {
		if d.Cause != CauseExit || d.ExitCode == nil || *d.ExitCode != 3 || !strings.Contains(d.Detail, "failing with 3") {
			t.Errorf("death %d: %+v", i, d)
		}
		if want := []int64{0, 20, 40}; i < 3 && d.BackoffMs != want[i] {
			t.Errorf("death %d: backoff %d ms, want %d", i, d.BackoffMs, want[i])
		}
	}
	if last := st.Deaths[3]; last.Restart || last.GiveUp == "" {
		t.Errorf("last death: %+v", last)
	}
	if sl := fakeSyncLog(t, cfg.Workspace); !strings.HasSuffix(sl, "final\n") {
		t.Errorf("no final snapshot: %s", sl)
	}
	// Run again on the same workspace: the earlier deaths stay on record,
	// the new run's are added after them.
	cfg.MaxRestarts = 0
	st2, err := runSupervisor(t, cfg)
	if err == nil || len(st2.Deaths) != 5 || st2.Deaths[0].Supervisor != st.Deaths[0].Supervisor || st2.Restarts != 0 {
		t.Errorf("second run: err %v, %d deaths, restarts %d", err, len(st2.Deaths), st2.Restarts)
	}
}

// A usage error of the runner (exit 2) is not retried: it would fail the
// same way forever.
func TestSupervisorNoRetryOnUsageError(t *testing.T) {
	cfg, _ := fakeConfig(t, "exit2", 512<<20)
	cfg.MemoryMode = MemoryWatchdog
	st, err := runSupervisor(t, cfg)
	if err == nil || len(st.Deaths) != 1 || st.Deaths[0].Restart {
		t.Fatalf("err %v deaths %+v", err, st.Deaths)
	}
}

// A SIGKILL from outside is a signal death; the runner comes back.
func TestSupervisorSignalDeath(t *testing.T) {
	cfg, _ := fakeConfig(t, "sleep,done", 512<<20)
	cfg.MemoryMode = MemoryWatchdog
	go func() {
		for i := 0; i < 200; i++ {
			time.Sleep(50 * time.Millisecond)
			if st, ok := readRunnerStatus(cfg.Workspace); ok && st.RunnerPID != 0 {
				syscall.Kill(st.RunnerPID, syscall.SIGKILL)
				return
			}
		}
	}()
	st, err := runSupervisor(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Deaths) != 1 || st.Deaths[0].Cause != CauseSignal || st.Deaths[0].Signal != "SIGKILL" || st.Deaths[0].RecoveredAt == nil {
		t.Fatalf("deaths %+v", st.Deaths)
	}
}

// Ctrl-C: the runner gets SIGTERM and stops, then the sync takes its final
// snapshot; no death is recorded.
func TestSupervisorGracefulStop(t *testing.T) {
	cfg, _ := fakeConfig(t, "sleep", 512<<20)
	cfg.MemoryMode = MemoryWatchdog
	cfg.ExitWhenIdle = false
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for i := 0; i < 200; i++ {
			time.Sleep(50 * time.Millisecond)
			if st, ok := readRunnerStatus(cfg.Workspace); ok && st.RunnerPID != 0 {
				cancel()
				return
			}
		}
	}()
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ := ReadStatus(cfg.Workspace)
	rs, _ := readRunnerStatus(cfg.Workspace)
	if st.State != StateStopped || len(st.Deaths) != 0 || rs.State != runner.StateStopped {
		t.Fatalf("supervisor %s deaths %d, runner %s", st.State, len(st.Deaths), rs.State)
	}
	if sl := fakeSyncLog(t, cfg.Workspace); !strings.HasSuffix(sl, "final\n") {
		t.Errorf("sync log: %s", sl)
	}
}

func TestBackoffAndBump(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 0, 2: 500 * time.Millisecond, 3: time.Second, 4: 2 * time.Second, 8: 30 * time.Second, 500: 30 * time.Second} {
		if got := Backoff(500*time.Millisecond, 30*time.Second, n); got != want {
			t.Errorf("Backoff(%d) = %v, want %v", n, got, want)
		}
	}
	if got := BumpLimit(1<<30, 1.5, 4<<30); got != 1536<<20 {
		t.Errorf("1 GiB x1.5 = %d", got)
	}
	if got := BumpLimit(3<<30, 1.5, 4<<30); got != 4<<30 {
		t.Errorf("capped: %d", got)
	}
	if got := BumpLimit(4<<30, 1.5, 4<<30); got != 4<<30 {
		t.Errorf("at max: %d", got)
	}
	if got := BumpLimit(1<<30, 0, 0); got != 1<<30 {
		t.Errorf("no bump: %d", got)
	}
}

func TestParseSize(t *testing.T) {
	good := map[string]int64{"512M": 512 << 20, "1.5GiB": 1536 << 20, "2Gi": 2 << 30, "1073741824": 1 << 30, "64mb": 64 << 20, "1T": 1 << 40}
	for in, want := range good {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "0M", "-1G", "12X", "G", "", "1.2.3M", "5 parsecs"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

// A sync that dies is restarted; the runner is not disturbed, and the
// session still ends with the final snapshot of the new sync.
func TestSupervisorRestartsDeadSync(t *testing.T) {
	cfg, out := fakeConfig(t, "sleep", 512<<20)
	cfg.MemoryMode = MemoryWatchdog
	cfg.ExitWhenIdle = false
	cfg.Env = append(cfg.Env, "TETHER_FAKE_SYNC_DIE=200ms")
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for i := 0; i < 400; i++ {
			time.Sleep(25 * time.Millisecond)
			if strings.Count(fakeSyncLog(t, cfg.Workspace), "start ") == 2 {
				time.Sleep(200 * time.Millisecond)
				cancel()
				return
			}
		}
		cancel()
	}()
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ := ReadStatus(cfg.Workspace)
	sl := fakeSyncLog(t, cfg.Workspace)
	if strings.Count(sl, "start ") != 2 || !strings.Contains(sl, "crash") || !strings.HasSuffix(sl, "final\n") {
		t.Errorf("sync log:\n%s", sl)
	}
	if len(st.Deaths) != 0 || st.Runner.Life != 1 {
		t.Errorf("the runner was disturbed: %+v", st)
	}
	if !strings.Contains(out.String(), "the sync exited unexpectedly (exit status 7") {
		t.Errorf("terminal does not report the sync's death")
	}
}

// The second Ctrl-C: a runner that ignores SIGTERM and a final snapshot that
// hangs are killed at once instead of waited for, and Run says the final
// snapshot did not complete.
func TestSupervisorForce(t *testing.T) {
	cfg, _ := fakeConfig(t, "stubborn", 512<<20)
	cfg.MemoryMode = MemoryWatchdog
	cfg.ExitWhenIdle = false
	cfg.Env = append(cfg.Env, "TETHER_FAKE_SYNC_SLOW_FINAL=1")
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var forcedAt time.Time
	go func() {
		for i := 0; i < 200; i++ {
			time.Sleep(50 * time.Millisecond)
			if st, ok := readRunnerStatus(cfg.Workspace); ok && st.RunnerPID != 0 {
				break
			}
		}
		cancel()
		time.Sleep(500 * time.Millisecond)
		forcedAt = time.Now()
		s.Force()
	}()
	err = s.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "final snapshot did not complete") {
		t.Fatalf("Run: %v", err)
	}
	if d := time.Since(forcedAt); d > 3*time.Second {
		t.Errorf("Run returned %v after the force", d)
	}
	st, _ := ReadStatus(cfg.Workspace)
	if st.State != StateFailed || len(st.Deaths) != 0 {
		t.Errorf("status %s, deaths %d", st.State, len(st.Deaths))
	}
}
