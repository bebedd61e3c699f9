package chaos

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/agent"
	"github.com/tether-dev/tether/internal/local"
	"github.com/tether-dev/tether/internal/runner"
	"github.com/tether-dev/tether/internal/snapshot"
	"github.com/tether-dev/tether/internal/store"
	"github.com/tether-dev/tether/test/claudecli"
	"github.com/tether-dev/tether/test/modelserver"
)

const initialPrompt = "[chaos] set up repos/chaos, then wait for turns"

// steps: each turn writes a file, commits it and sleeps a little (so kills
// land inside tool calls too), then answers with a text unique to the turn.
func steps(ws string, turns int) []modelserver.Step {
	T := modelserver.Text
	B := func(cmd string) modelserver.Block { return modelserver.Bash(fmt.Sprintf("cd %q && ", ws) + cmd) }
	out := []modelserver.Step{
		{Cue: "previous turn was interrupted", Reply: []modelserver.Block{T("noted: the previous turn was interrupted")}},
		{Cue: "could not be resumed", Reply: []modelserver.Block{T("noted: a new session with a recap")}},
	}
	for k := turns; k >= 1; k-- {
		out = append(out,
			modelserver.Step{Cue: fmt.Sprintf("CHAOS-TURN-%d-OK", k), Reply: []modelserver.Block{T(fmt.Sprintf("turn %d is done", k))}},
			modelserver.Step{Cue: fmt.Sprintf("[chaos turn %d]", k), Reply: []modelserver.Block{T(fmt.Sprintf("working on turn %d", k)),
				B(fmt.Sprintf("cd repos/chaos && rm -f .git/index.lock && printf 'turn %d %s\\n' > turn-%d.txt && git add turn-%d.txt && git commit -qm 'turn %d' && sleep 0.3 && echo CHAOS-TURN-%d-OK", k, strings.Repeat("x", k%97), k, k, k, k))}},
		)
	}
	out = append(out,
		modelserver.Step{Cue: "CHAOS-INIT-OK", Reply: []modelserver.Block{T("the repository is ready")}},
		modelserver.Step{Cue: "[chaos] set up", Reply: []modelserver.Block{T("setting up"),
			B("mkdir -p repos/chaos && cd repos/chaos && git init -q -b main && git config user.email c@c && git config user.name chaos && git commit -q --allow-empty -m start && echo CHAOS-INIT-OK")}},
	)
	return out
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func tetherBin(t *testing.T) string {
	bin := os.Getenv("TETHER_BIN")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "tether")
		_, file, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/tether")
		cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build tether: %v\n%s", err, out)
		}
	}
	for _, sub := range []string{"runner", "sync"} {
		out, err := exec.Command(bin, sub, "--help").CombinedOutput()
		if err != nil {
			msg := fmt.Sprintf("%s has no `%s` command: %s", bin, sub, bytes.TrimSpace(out))
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	return bin
}

// fileState is one file's bytes and age, for the 5-second invariant.
type fileState struct {
	hash  string
	mtime time.Time
}

func files(dir string) map[string]fileState {
	out := map[string]fileState{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			fi, err2 := d.Info()
			if err == nil && err2 == nil {
				h := sha256.Sum256(b)
				rel, _ := filepath.Rel(dir, p)
				out[rel] = fileState{hex.EncodeToString(h[:]), fi.ModTime()}
			}
		}
		return nil
	})
	return out
}

func gitOut(dir string, args ...string) string {
	out, _ := exec.Command("git", append([]string{"-C", dir}, args...)...).Output()
	return strings.TrimSpace(string(out))
}

type violations struct {
	mu   sync.Mutex
	byIn map[string][]string
}

func (v *violations) add(inv, format string, args ...any) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.byIn[inv] = append(v.byIn[inv], fmt.Sprintf(format, args...))
}

const (
	invResults = "every turn whose result was seen is in the transcript"
	invID      = "the session id changes only through a reported resume failure"
	invCommits = "every commit made before the kill is present"
	invFiles   = "every file written >5 s before the kill has its bytes (workspace and store)"
	invPrompt  = "the initial prompt was delivered once"
)

// TestChaos: CHAOS_N (default 5) SIGKILLs of the runner at random moments of
// a multi-turn session.
func TestChaos(t *testing.T) {
	n := envInt("CHAOS_N", 5)
	bin := tetherBin(t)
	claude := claudecli.Bin(t)
	root := t.TempDir()
	ws := filepath.Join(root, "ws")
	storeURL := "file://" + filepath.Join(root, "store")
	srv := modelserver.Start(nil, steps(ws, 100000)...)
	defer srv.Close()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()

	var termMu sync.Mutex
	var term bytes.Buffer
	cfg := local.Config{
		Workspace: ws, Namespace: "chaos", Session: "chaos-" + strconv.FormatInt(time.Now().Unix(), 36), StoreURL: storeURL,
		Self: bin, RunnerArgs: []string{"--claude-bin", claude}, Prompt: initialPrompt,
		Env:       []string{"ANTHROPIC_BASE_URL=" + srv.URL(), "ANTHROPIC_API_KEY=chaos", "DISABLE_TELEMETRY=1", "DISABLE_AUTOUPDATER=1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1"},
		RunnerEnv: []string{"HOME=" + filepath.Join(root, "home")},
		Listen:    addr, MemoryLimit: 2 << 30, MemoryMode: local.MemoryAuto,
		// The kills come from outside every few seconds, not from a crash
		// loop: a life of 1 s counts as stable. Backoff as in production
		// otherwise (first restart immediate, then doubling).
		MaxRestarts: n + 20, StableAfter: time.Second, BackoffMax: 2 * time.Second,
		LogDir: filepath.Join(root, "logs"),
		Out:    writerFunc(func(p []byte) { termMu.Lock(); term.Write(p); termMu.Unlock() }),
	}
	os.MkdirAll(filepath.Join(root, "home"), 0o755)
	sup, err := local.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- sup.Run(ctx) }()

	viol := &violations{byIn: map[string][]string{}}
	repo := filepath.Join(ws, "repos", "chaos")
	url := "http://" + addr

	// The sender: one turn after another, as a client would.
	sendCtx, stopSending := context.WithCancel(ctx)
	var sent sync.WaitGroup
	sent.Add(1)
	go func() {
		defer sent.Done()
		for k := 1; sendCtx.Err() == nil; k++ {
			msg := fmt.Sprintf("[chaos turn %d] write turn-%d.txt and commit it", k, k)
			for sendCtx.Err() == nil {
				err := runner.SendMessage(sendCtx, url, "", "main", msg, io.Discard)
				if err == nil || !strings.HasPrefix(err.Error(), "send to ") {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()

	st, err := openRepo(ctx, storeURL, cfg.Namespace, cfg.Session)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	kills := 0
	waitReady := func(lastPID int) (runner.Status, bool) {
		deadline := time.Now().Add(120 * time.Second)
		for time.Now().Before(deadline) {
			b, err := os.ReadFile(filepath.Join(ws, runner.StatusFile))
			var s runner.Status
			if err == nil && json.Unmarshal(b, &s) == nil && s.RunnerPID != lastPID && s.State == runner.StateReady {
				return s, true
			}
			time.Sleep(20 * time.Millisecond)
		}
		return runner.Status{}, false
	}
	lastPID := 0
	for kills < n {
		s, ok := waitReady(lastPID)
		if !ok {
			termMu.Lock()
			t.Fatalf("the runner was not ready within 120s after kill %d\n%s", kills, term.String())
		}
		// The state right before the kill.
		if kills > 0 || s.Turns > 0 {
			time.Sleep(time.Duration(300+rand.IntN(2700)) * time.Millisecond)
		} else {
			time.Sleep(time.Duration(rand.IntN(3000)) * time.Millisecond)
		}
		ids, _ := st.SnapshotIDs(ctx)
		headBefore := gitOut(repo, "rev-parse", "HEAD")
		before := files(repo)
		killAt := time.Now()
		cur, _ := readStatus(ws)
		if err := syscall.Kill(cur.RunnerPID, syscall.SIGKILL); err != nil {
			t.Fatalf("kill runner %d: %v", cur.RunnerPID, err)
		}
		kills++
		lastPID = cur.RunnerPID
		if _, ok := waitReady(lastPID); !ok {
			termMu.Lock()
			t.Fatalf("no recovery after kill %d\n%s", kills, term.String())
		}
		// Invariant: commits before the kill are still there.
		if headBefore != "" {
			if err := exec.Command("git", "-C", repo, "merge-base", "--is-ancestor", headBefore, "HEAD").Run(); err != nil {
				viol.add(invCommits, "kill %d: HEAD before the kill %s is not an ancestor of HEAD after: %v", kills, headBefore, err)
			}
		}
		// Invariant: files older than 5 s have their bytes, in the
		// workspace and in the newest snapshot completed before the kill.
		after := files(repo)
		var old []string
		for p, f := range before {
			if killAt.Sub(f.mtime) > 5*time.Second {
				old = append(old, p)
				if after[p].hash != f.hash {
					viol.add(invFiles, "kill %d: workspace %s changed or vanished", kills, p)
				}
			}
		}
		if len(old) > 0 && len(ids) > 0 {
			dir := filepath.Join(root, fmt.Sprintf("restore-%d", kills))
			if _, err := snapshot.Restore(ctx, st, dir, snapshot.RestoreOptions{Snapshot: ids[len(ids)-1]}); err != nil {
				viol.add(invFiles, "kill %d: restore of snapshot %s: %v", kills, ids[len(ids)-1], err)
			} else {
				got := files(filepath.Join(dir, "repos", "chaos"))
				for _, p := range old {
					if got[p].hash != before[p].hash {
						viol.add(invFiles, "kill %d: snapshot %s lacks %s as it was (written %v before the kill)", kills, ids[len(ids)-1], p, killAt.Sub(before[p].mtime).Round(time.Millisecond))
					}
				}
			}
			os.RemoveAll(dir)
		} else if len(old) > 0 {
			viol.add(invFiles, "kill %d: files older than 5 s but no snapshot in the store", kills)
		}
		t.Logf("kill %d/%d at %v: runner %d, %d files older than 5 s checked", kills, n, time.Since(start).Round(time.Millisecond), cur.RunnerPID, len(old))
	}
	// Let the session settle, then stop gracefully.
	stopSending()
	waitReady(lastPID)
	time.Sleep(time.Second)
	cancel()
	if err := <-runErr; err != nil {
		t.Errorf("supervisor: %v", err)
	}
	sent.Wait()

	checkLog(t, ws, viol)
	sup2, _ := local.ReadStatus(ws)
	var rec, restart, startup []int64
	for _, d := range sup2.Deaths {
		if d.RecoveredAt != nil && d.RestartedAt != nil {
			rec = append(rec, d.RecoveryMs)
			restart = append(restart, d.RestartedAt.Sub(d.DiedAt).Milliseconds())
			startup = append(startup, d.RecoveredAt.Sub(*d.RestartedAt).Milliseconds())
		}
	}
	pctOf := func(xs []int64, p float64) int64 {
		if len(xs) == 0 {
			return -1
		}
		xs = append([]int64(nil), xs...)
		sort.Slice(xs, func(i, j int) bool { return xs[i] < xs[j] })
		return xs[min(len(xs)-1, int(float64(len(xs))*p))]
	}
	pct := func(p float64) int64 { return pctOf(rec, p) }
	total := 0
	var b strings.Builder
	fmt.Fprintf(&b, "\nchaos: %d kills in %v, memory enforcement %s\n", kills, time.Since(start).Round(time.Second), sup2.Memory.Mode)
	fmt.Fprintf(&b, "  kills                %d\n  recoveries           %d (deaths recorded %d)\n", kills, len(rec), len(sup2.Deaths))
	fmt.Fprintf(&b, "  recovery time        p50 %d ms, p99 %d ms, max %d ms (death -> runner resumed and ready)\n", pct(0.5), pct(0.99), pct(1))
	fmt.Fprintf(&b, "    of which            death -> runner restarted (backoff) p50 %d ms, p99 %d ms; restarted -> ready (CLI start, resume) p50 %d ms, p99 %d ms\n",
		pctOf(restart, 0.5), pctOf(restart, 0.99), pctOf(startup, 0.5), pctOf(startup, 0.99))
	fmt.Fprintf(&b, "  invariant violations:\n")
	for _, inv := range []string{invResults, invID, invCommits, invFiles, invPrompt} {
		v := viol.byIn[inv]
		total += len(v)
		fmt.Fprintf(&b, "    %-80s %d\n", inv, len(v))
		for i, s := range v {
			if i < 5 {
				fmt.Fprintf(&b, "      - %s\n", s)
			}
		}
	}
	fmt.Fprintf(&b, "  total violations     %d\n", total)
	t.Log(b.String())
	fmt.Print(b.String())
	if total > 0 {
		t.Fail()
	}
	if len(rec) != kills {
		t.Errorf("%d kills but %d recoveries recorded", kills, len(rec))
	}
}

type writerFunc func([]byte)

func (w writerFunc) Write(p []byte) (int, error) { w(p); return len(p), nil }

func readStatus(ws string) (runner.Status, error) {
	var s runner.Status
	b, err := os.ReadFile(filepath.Join(ws, runner.StatusFile))
	if err == nil {
		err = json.Unmarshal(b, &s)
	}
	return s, err
}

func openRepo(ctx context.Context, url, ns, session string) (*snapshot.Repo, error) {
	st, err := store.Open(ctx, url)
	if err != nil {
		return nil, err
	}
	return snapshot.OpenRepo(st, ns, session)
}

// checkLog checks the invariants the runner's event log and the transcripts
// answer: results in transcripts, session id changes, initial prompt once.
func checkLog(t *testing.T, ws string, viol *violations) {
	f, err := os.Open(filepath.Join(ws, runner.EventLogFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<26)
	initial := 0
	lastID := ""
	resumeSince := []runner.ResumeStatus{}
	transcripts := map[string]string{}
	transcript := func(id string) string {
		if s, ok := transcripts[id]; ok {
			return s
		}
		b, _ := os.ReadFile(agent.TranscriptPath(filepath.Join(ws, runner.ClaudeDir), ws, id))
		transcripts[id] = string(b)
		return transcripts[id]
	}
	results := 0
	for sc.Scan() {
		var rec runner.Record
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		switch {
		case rec.Kind == runner.KindInput && rec.Type == runner.SourceInitial:
			initial++
		case rec.Kind == runner.KindRunner && rec.Type == "resume":
			var rs runner.ResumeStatus
			json.Unmarshal(rec.Data, &rs)
			resumeSince = append(resumeSince, rs)
		case rec.Kind == runner.KindCLI:
			ev, err := agent.ParseLine(rec.Data)
			if err != nil {
				continue
			}
			if ev.IsInit() && ev.SessionID != "" {
				if lastID != "" && ev.SessionID != lastID {
					ok := false
					for _, rs := range resumeSince {
						if rs.Outcome == runner.ResumeFailed || (rs.Outcome == runner.ResumeResumed && rs.SessionID == ev.SessionID) {
							ok = true
						}
					}
					if !ok {
						viol.add(invID, "session id %s -> %s with no resume failure reported", lastID, ev.SessionID)
					}
				}
				lastID, resumeSince = ev.SessionID, nil
			}
			if ev.Result != nil && !ev.Result.IsError && ev.Result.Result != "" {
				results++
				id := ev.SessionID
				if id == "" {
					id = lastID
				}
				if !strings.Contains(transcript(id), ev.Result.Result) {
					viol.add(invResults, "turn %d result %q is not in transcript %s", rec.Turn, ev.Result.Result, id)
				}
			}
		}
	}
	if initial != 1 {
		viol.add(invPrompt, "the initial prompt was delivered %d times", initial)
	}
	t.Logf("event log: %d results checked against transcripts, %d initial prompt inputs", results, initial)
}
