package runner

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/agent"
	"github.com/tether-dev/tether/test/claudecli"
	"github.com/tether-dev/tether/test/modelserver"
)

// testConfig is a Config for the real CLI talking to srv, in workspace ws.
func testConfig(t testing.TB, srv *modelserver.Server, ws string) Config {
	bin := claudecli.Bin(t)
	// An empty HOME: the CLI's Bash tool sources ~/.bashrc, and a
	// developer's rc files must not slow or break the tests.
	env := []string{"ANTHROPIC_BASE_URL=" + srv.URL(), "ANTHROPIC_API_KEY=test", "HOME=" + t.TempDir()}
	return Config{
		Workspace:    ws,
		ClaudeBin:    bin,
		AllowedTools: []string{"Bash", "Write", "Edit", "Read"},
		Env:          env,
		StartTimeout: 30 * time.Second,
		StopTimeout:  10 * time.Second,
		Logger:       testLogger(t),
		CLIStderr:    os.Stderr,
	}
}

type logWriter struct {
	t  testing.TB
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.b.Write(p)
	w.mu.Unlock()
	w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (w *logWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func testLogger(t testing.TB) *slog.Logger { return loggerTo(&logWriter{t: t}) }

func loggerTo(w *logWriter) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// running is a Runner run in-process by a test.
type running struct {
	r      *Runner
	cancel context.CancelFunc
	errc   chan error
}

func startRunner(t *testing.T, cfg Config) *running {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rr := &running{r: r, cancel: cancel, errc: make(chan error, 1)}
	go func() { rr.errc <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-rr.errc:
		case <-time.After(30 * time.Second):
			t.Error("runner did not stop within 30s")
		}
	})
	return rr
}

// stop cancels the runner and returns Run's result.
func (rr *running) stop(t *testing.T) error {
	t.Helper()
	rr.cancel()
	select {
	case err := <-rr.errc:
		rr.errc <- err // for Cleanup
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("runner did not stop within 30s")
		return nil
	}
}

func (rr *running) ready(t *testing.T) {
	t.Helper()
	select {
	case <-rr.r.Ready():
	case err := <-rr.errc:
		rr.errc <- err
		t.Fatalf("runner ended before ready: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("runner not ready within 60s")
	}
}

// readLog reads the event log file of ws (tolerating a torn last line).
func readLog(t testing.TB, ws string) []Record {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(ws, EventLogFile))
	if err != nil {
		return nil
	}
	var recs []Record
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<26)
	for sc.Scan() {
		var rec Record
		if json.Unmarshal(sc.Bytes(), &rec) == nil {
			recs = append(recs, rec)
		}
	}
	return recs
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// results counts the CLI result lines of turns in the log (not the error
// result of a refused --resume, which belongs to no turn).
func results(recs []Record) int {
	n := 0
	for _, r := range recs {
		if r.Kind == KindCLI && r.Type == agent.TypeResult && r.Turn > 0 {
			n++
		}
	}
	return n
}

// initIDs returns the session ids of the init lines in the log, in order.
func initIDs(recs []Record) []string {
	var ids []string
	for _, r := range recs {
		if r.Kind == KindCLI && r.Type == agent.TypeSystem {
			if ev, err := agent.ParseLine(r.Data); err == nil && ev.IsInit() {
				ids = append(ids, ev.SessionID)
			}
		}
	}
	return ids
}

func findRunner(recs []Record, typ string) []Record {
	var out []Record
	for _, r := range recs {
		if r.Kind == KindRunner && r.Type == typ {
			out = append(out, r)
		}
	}
	return out
}

func readStatus(t testing.TB, ws string) Status {
	t.Helper()
	var st Status
	data, err := os.ReadFile(filepath.Join(ws, StatusFile))
	if err != nil {
		t.Fatalf("status file: %v", err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatalf("status file %q: %v", data, err)
	}
	return st
}

func storedID(t testing.TB, ws string) string {
	t.Helper()
	id, err := agent.OpenSessionIDs(ws).Get("main")
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// childEnv is the variable carrying a child runner's Config (JSON).
const childEnv = "TETHER_RUNNER_TEST_CHILD"

// TestRunnerChild is the runner process that kill tests start and SIGKILL.
func TestRunnerChild(t *testing.T) {
	js := os.Getenv(childEnv)
	if js == "" {
		t.Skip("helper process for the kill tests")
	}
	var cfg Config
	if err := json.Unmarshal([]byte(js), &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := r.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// startChild starts a runner in a child process (its own process group, so
// the test can SIGKILL the runner, the CLI and the CLI's tools at once).
func startChild(t *testing.T, cfg Config, stderr *bytes.Buffer) *exec.Cmd {
	t.Helper()
	cfg.Logger = nil
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRunnerChild$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+string(js))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout = stderr
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// killGroup plays a container's death: SIGKILL to the runner's process group
// and to the CLI's (the status file names its pid), at once.
func killGroup(cmd *exec.Cmd, ws string) {
	var cliPID int
	if data, err := os.ReadFile(filepath.Join(ws, StatusFile)); err == nil {
		var st Status
		if json.Unmarshal(data, &st) == nil {
			cliPID = st.CLIPID
		}
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if cliPID > 0 {
		syscall.Kill(-cliPID, syscall.SIGKILL)
	}
	cmd.Wait()
}
