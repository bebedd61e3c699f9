package main

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tether-dev/tether/test/agentwriter"
)

// windows are data-loss windows by kind of state: the age, at the kill, of
// the oldest write missing from what a restore gets back (0 when nothing is
// missing).
type windows struct {
	Kills int
	// RcloneRefused counts rclone's "source file is being updated" errors in
	// the loop: a file that grew while it was being copied is left out.
	RcloneRefused                         int
	Transcript, SessionID, Commits, Files []time.Duration
}

// quantiles of one kind: p50 and p99.
type quantiles struct{ P50, P99 time.Duration }

func q(ds []time.Duration) quantiles {
	return quantiles{percentile(ds, 0.5), percentile(ds, 0.99)}
}

// tetherWindows is what the statesync harness logged.
type tetherWindows struct {
	Kills                             int
	Transcript, SessionID, Repo       quantiles // writer killed, sync keeps running
	NodeTranscript, NodeSID, NodeRepo quantiles // writer and sync die together
	Passed                            bool
	Wall                              time.Duration
}

var (
	windowRe = regexp.MustCompile(`data-loss window over (\d+) kills: transcript p50 (\S+) p99 (\S+); session id p50 (\S+) p99 (\S+); repository p50 (\S+) p99 (\S+)`)
	nodeRe   = regexp.MustCompile(`if the sync had died with the writer \(newest snapshot at the kill\): transcript p50 (\S+) p99 (\S+); session id p50 (\S+) p99 (\S+); repository p50 (\S+) p99 (\S+)`)
)

// runTetherHarness runs internal/statesync's TestDataLossWindow (the same
// harness `make bench` runs) and parses its two summary lines.
func runTetherHarness(ctx context.Context, kills int) (tetherWindows, error) {
	var w tetherWindows
	cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-timeout=30m", "-run", "^TestDataLossWindow$", "-v", "./internal/statesync")
	cmd.Env = append(cleanEnv(), "TETHER_HARNESS_KILLS="+strconv.Itoa(kills))
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	w.Wall = time.Since(t0)
	w.Passed = err == nil
	m := windowRe.FindStringSubmatch(string(out))
	n := nodeRe.FindStringSubmatch(string(out))
	if m == nil || n == nil {
		return w, fmt.Errorf("TestDataLossWindow printed no window summary (%v):\n%s", err, tail(string(out), 3000))
	}
	w.Kills, _ = strconv.Atoi(m[1])
	d := func(s string) time.Duration { v, _ := time.ParseDuration(s); return v }
	w.Transcript = quantiles{d(m[2]), d(m[3])}
	w.SessionID = quantiles{d(m[4]), d(m[5])}
	w.Repo = quantiles{d(m[6]), d(m[7])}
	w.NodeTranscript = quantiles{d(n[1]), d(n[2])}
	w.NodeSID = quantiles{d(n[3]), d(n[4])}
	w.NodeRepo = quantiles{d(n[5]), d(n[6])}
	return w, nil
}

// The reference schedule, in real seconds.
const (
	refInterval     = 60 * time.Second
	refInitialDelay = 30 * time.Second
	refRepoEvery    = 5
)

// computedWindows gives the reference schedule's windows for a kill at a
// uniformly random moment in [lo, hi] after the session starts, with
// captures taken as instantaneous: a write is safe once a capture has started
// after it, and a kill loses everything written since the last capture start
// (since the session start when there was none).
func computedWindows(lo, hi time.Duration) (transcript, repo quantiles) {
	rng := rand.New(rand.NewSource(7))
	var tr, rp []time.Duration
	for i := 0; i < 100000; i++ {
		k := lo + time.Duration(rng.Int63n(int64(hi-lo)))
		var lastState, lastRepo time.Duration
		for n := 1; ; n++ {
			at := refInitialDelay + time.Duration(n-1)*refInterval
			if at > k {
				break
			}
			lastState = at
			if n%refRepoEvery == 0 {
				lastRepo = at
			}
		}
		tr, rp = append(tr, k-lastState), append(rp, k-lastRepo)
	}
	return q(tr), q(rp)
}

// baselineHarness is the kill harness for the reference loop: the same kind
// of writer as internal/statesync's harness (transcript appends, an atomically
// rewritten session-id file, untracked binary files and commits in a
// repository) runs next to baseline.sh's loop with the schedule divided by
// scale; both are SIGKILLed together at a random moment (the pod is gone),
// the store is restored with baseline.sh and compared with the writer's log.
// Windows are multiplied by scale back to real time.
type baselineHarness struct {
	e       *env
	scale   float64
	trials  int
	maxKill time.Duration // scaled
	logf    func(string, ...any)
}

func (h *baselineHarness) run(ctx context.Context) (windows, error) {
	var w windows
	root := filepath.Join(h.e.scratch, "killharness")
	ws := filepath.Join(root, "ws")
	app := filepath.Join(ws, "repos/app")
	for _, d := range []string{app, filepath.Join(ws, ".tether"), filepath.Join(ws, ".claude/projects/-ws")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return w, err
		}
	}
	if err := git(ctx, app, "init", "-q", "-b", "main"); err != nil {
		return w, err
	}
	if err := git(ctx, app, "commit", "-q", "--allow-empty", "-m", "start"); err != nil {
		return w, err
	}
	os.WriteFile(filepath.Join(ws, ".claude/projects/-ws/t.jsonl"), nil, 0o600)
	benv := append(h.e.minio.rcloneEnv(), "WS="+ws, "REMOTE=bench:baseline-kill/ws")
	// The store holds the state from before the session: a restore always
	// has something to start from.
	if _, err := run(ctx, benv, "bash", h.e.script, "backup"); err != nil {
		return w, err
	}
	logPath := filepath.Join(root, "writer.log")
	self, err := os.Executable()
	if err != nil {
		return w, err
	}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	scaled := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds()/h.scale, 'f', 3, 64) }
	loopLog, err := os.Create(filepath.Join(root, "loop.log"))
	if err != nil {
		return w, err
	}
	defer loopLog.Close()
	seq := 0
	for i := 0; i < h.trials; i++ {
		start := time.Now()
		loop := exec.Command("bash", h.e.script, "loop")
		loop.Env = append(append(cleanEnv(), benv...), "INTERVAL="+scaled(refInterval), "INITIAL_DELAY="+scaled(refInitialDelay))
		loop.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		loop.Stderr = loopLog
		if err := loop.Start(); err != nil {
			return w, err
		}
		writer := exec.Command(self)
		writer.Env = append(gitEnv(), childEnv+"=writer", "CHILD_WORKSPACE="+ws, "CHILD_LOG="+logPath, "CHILD_SEQ="+strconv.Itoa(seq))
		writer.Stderr = os.Stderr
		writer.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := writer.Start(); err != nil {
			return w, err
		}
		time.Sleep(200*time.Millisecond + time.Duration(rng.Int63n(int64(h.maxKill-200*time.Millisecond))))
		_ = syscall.Kill(-loop.Process.Pid, syscall.SIGKILL)
		_ = writer.Process.Signal(syscall.SIGKILL)
		killedAt := time.Now()
		loop.Wait()
		writer.Wait()

		entries, err := agentwriter.ReadLog(logPath)
		if err != nil {
			return w, err
		}
		if len(entries) > 0 {
			seq = entries[len(entries)-1].Seq
		}
		dest := filepath.Join(root, "restored")
		os.RemoveAll(dest)
		if _, err := run(ctx, benv, "bash", h.e.script, "restore", dest); err != nil {
			return w, fmt.Errorf("kill %d: baseline restore: %w", i, err)
		}
		got, err := agentwriter.ReadState(dest)
		if err != nil {
			return w, fmt.Errorf("kill %d: baseline restore: %w", i, err)
		}
		win := func(kind string) time.Duration {
			return time.Duration(float64(got.Window(entries, kind, start, killedAt)) * h.scale)
		}
		w.Transcript = append(w.Transcript, win(agentwriter.KindTranscript))
		w.SessionID = append(w.SessionID, win(agentwriter.KindSessionID))
		w.Commits = append(w.Commits, win(agentwriter.KindCommit))
		w.Files = append(w.Files, win(agentwriter.KindUntracked))
		w.Kills++
		h.logf("  baseline kill %d/%d after %s (x%.0f = %s): lost transcript %s, session id %s, commits %s, untracked files %s",
			i+1, h.trials, killedAt.Sub(start).Round(time.Millisecond), h.scale, (time.Duration(float64(killedAt.Sub(start)) * h.scale)).Round(time.Second),
			last(w.Transcript), last(w.SessionID), last(w.Commits), last(w.Files))
		os.RemoveAll(dest)
	}
	if data, err := os.ReadFile(loopLog.Name()); err == nil {
		w.RcloneRefused = strings.Count(string(data), "source file is being updated")
	}
	return w, nil
}

func last(ds []time.Duration) time.Duration { return ds[len(ds)-1].Round(time.Second) }

// The writer child, as in internal/statesync's harness.
const childEnv = "BENCH_COMPARE_CHILD"

var recoveryRe = regexp.MustCompile(`recovery time\s+p50 (-?\d+) ms, p99 (-?\d+) ms, max (-?\d+) ms`)
var chaosKillsRe = regexp.MustCompile(`chaos: (\d+) kills in (\S+), memory enforcement (\S+)`)

// runChaos runs test/chaos's TestChaos (the local-mode chaos run behind
// `make chaos`) with n kills and returns its recovery-time line for the
// report, or an error saying why there is none.
func runChaos(ctx context.Context, tether string, n int) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-timeout=30m", "-run", "^TestChaos$", "-v", "./test/chaos/")
	cmd.Env = append(cleanEnv(), "TETHER_BIN="+tether, "CHAOS_N="+strconv.Itoa(n))
	out, err := cmd.CombinedOutput()
	m := recoveryRe.FindStringSubmatch(string(out))
	if m == nil || m[1] == "-1" {
		return "", fmt.Errorf("TestChaos printed no recovery time (%v):\n%s", err, tail(string(out), 3000))
	}
	s := fmt.Sprintf("p50 %s ms, p99 %s ms, max %s ms (death of the runner -> runner resumed and ready", m[1], m[2], m[3])
	if k := chaosKillsRe.FindStringSubmatch(string(out)); k != nil {
		s += fmt.Sprintf("; %s SIGKILLs in %s, memory enforcement %s", k[1], k[2], k[3])
	}
	s += ")"
	if err != nil {
		s += "; the chaos test itself failed (invariant violations), see `make chaos`"
	}
	return s, nil
}
