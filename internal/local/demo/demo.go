package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tether-dev/tether/internal/local"
	"github.com/tether-dev/tether/internal/runner"
	"github.com/tether-dev/tether/internal/snapshot"
	"github.com/tether-dev/tether/internal/statesync"
	"github.com/tether-dev/tether/internal/store"
	"github.com/tether-dev/tether/test/modelserver"
)

// Options configure a demo run.
type Options struct {
	// Tether is the absolute path of the tether binary (the children and
	// the memory hog run it).
	Tether string
	// ClaudeBin is the real Claude Code CLI.
	ClaudeBin string
	// Workspace is wiped at start; it must be empty, absent or a previous
	// demo's (it holds a .tether-demo marker).
	Workspace string
	StoreURL  string
	Namespace string
	Session   string
	// Fresh wipes the local workspace after the OOM kill and restores it
	// from the store before the runner comes back.
	Fresh bool
	// MemoryLimit is the runner's limit; the hog tries to take HogMiB.
	MemoryLimit int64
	HogMiB      int
	MemoryMode  string
	LogDir      string
	Out         io.Writer
}

// markerOf is the file next to a demo workspace that says the demo made it
// (inside, it would make hydrate refuse the directory as not empty).
func markerOf(ws string) string {
	return filepath.Join(filepath.Dir(ws), "."+filepath.Base(ws)+".tether-demo")
}

// Report is what the demo measured and checked.
type Report struct {
	Session      string
	Workspace    string
	Store        string
	Fresh        bool
	Wall         time.Duration
	MemoryMode   string
	Death        *local.Death
	SessionAfter string
	Resume       string
	// ReadyAt is when the runner after the kill was ready (resumed).
	ReadyAt     time.Time
	FinishedAt  time.Time
	Hydrate     *statesync.HydrateResult // fresh mode: the restore
	Checks      []check
	Snapshots   int
	Saves       int
	Uploaded    int64
	InitialSent int
	Start       time.Time
}

// OK reports whether every check passed.
func (r *Report) OK() bool {
	if r.Death == nil {
		return false
	}
	for _, c := range r.Checks {
		if !c.OK {
			return false
		}
	}
	return len(r.Checks) > 0
}

// Run runs the demo and returns its report; the error says what failed.
func Run(ctx context.Context, o Options) (*Report, error) {
	start := time.Now()
	rep := &Report{Session: o.Namespace + "/" + o.Session, Workspace: o.Workspace, Store: o.StoreURL, Fresh: o.Fresh, Start: start}
	if err := prepareWorkspace(o.Workspace); err != nil {
		return nil, err
	}
	srv := modelserver.Start(nil, Steps(o.Tether, o.Workspace, o.HogMiB)...)
	defer srv.Close()
	env := []string{
		"ANTHROPIC_BASE_URL=" + srv.URL(), "ANTHROPIC_API_KEY=tether-demo",
		"DISABLE_TELEMETRY=1", "DISABLE_AUTOUPDATER=1", "DISABLE_ERROR_REPORTING=1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
	}

	home := filepath.Join(o.LogDir, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var before *repoState
	var beforeErr error
	repoDir := filepath.Join(o.Workspace, RepoDir)
	cfg := local.Config{
		Workspace: o.Workspace, Namespace: o.Namespace, Session: o.Session, StoreURL: o.StoreURL,
		Self: o.Tether, RunnerArgs: []string{"--claude-bin", o.ClaudeBin}, Prompt: Prompt, Env: env,
		// A HOME of its own for the agent: the CLI's Bash tool sources the
		// user's shell start-up files, whose cost and output are not the demo's.
		RunnerEnv:   []string{"HOME=" + home},
		MemoryLimit: o.MemoryLimit, OOMBump: 1.5, MemoryMax: 2 * o.MemoryLimit, MemoryMode: o.MemoryMode,
		MaxRestarts: 3, BackoffBase: 200 * time.Millisecond, LogDir: o.LogDir, Out: o.Out, ExitWhenIdle: true,
		OnDeath: func(d local.Death) bool {
			mu.Lock()
			defer mu.Unlock()
			if rep.Death == nil {
				dd := d
				rep.Death = &dd
				// The whole group is dead: the workspace is as the kill left it.
				before, beforeErr = captureRepo(repoDir)
			}
			return !o.Fresh
		},
		OnReady: func(st runner.Status) {
			mu.Lock()
			defer mu.Unlock()
			if rep.Death != nil && rep.ReadyAt.IsZero() {
				rep.ReadyAt, rep.SessionAfter, rep.Resume = time.Now(), st.SessionID, st.Resume.Outcome
			}
		},
	}
	sup, err := local.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := sup.Run(ctx); err != nil {
		return rep, err
	}
	if rep.Death == nil {
		return rep, errors.New("the runner was never killed: the memory hog did not exceed the limit, or the script went another way; see the logs in " + o.LogDir)
	}
	if beforeErr != nil {
		return rep, fmt.Errorf("capture the repository at the kill: %w", beforeErr)
	}
	if o.Fresh {
		fmt.Fprintf(o.Out, "\ntether-demo: --fresh-workspace: wiping %s; everything must come back from the store\n\n", o.Workspace)
		if err := os.RemoveAll(o.Workspace); err != nil {
			return rep, err
		}
		if err := os.MkdirAll(o.Workspace, 0o755); err != nil {
			return rep, err
		}
		cfg.OnDeath = func(d local.Death) bool { return true }
		sup, err := local.New(cfg)
		if err != nil {
			return rep, err
		}
		if err := sup.Run(ctx); err != nil {
			return rep, err
		}
		b, err := os.ReadFile(filepath.Join(o.Workspace, statesync.HydrateFile))
		if err == nil {
			rep.Hydrate = &statesync.HydrateResult{}
			json.Unmarshal(b, rep.Hydrate)
		}
	}
	rep.FinishedAt = time.Now()
	rep.Wall = time.Since(start)
	if st, err := local.ReadStatus(o.Workspace); err == nil {
		rep.MemoryMode = st.Memory.Mode
	}

	after, err := captureRepo(repoDir)
	if err != nil {
		return rep, fmt.Errorf("the repository after recovery: %w", err)
	}
	rep.Checks = compare(before, after)
	rep.Checks = append(rep.Checks, sessionChecks(o.Workspace, rep)...)
	rep.Saves, rep.Uploaded = syncStats(filepath.Join(o.LogDir, "sync.log"))
	rep.Snapshots = countSnapshots(ctx, o.StoreURL, o.Namespace, o.Session)
	if !rep.OK() {
		return rep, errors.New("some checks failed (see the report)")
	}
	return rep, nil
}

// prepareWorkspace empties dir, refusing to wipe a directory that is not a
// demo's own.
func prepareWorkspace(dir string) error {
	names, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	if len(names) > 0 {
		if _, err := os.Stat(markerOf(dir)); err != nil {
			return fmt.Errorf("demo workspace %s is not empty and is not a previous demo's (no %s): refusing to wipe it; pass an empty or new directory", dir, markerOf(dir))
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(markerOf(dir), nil, 0o644)
}

// sessionChecks: the conversation went on in the same CLI session, the
// initial prompt was sent once, the agent finished after the kill.
func sessionChecks(ws string, rep *Report) []check {
	var out []check
	add := func(what string, ok bool, note string) { out = append(out, check{what, ok, note}) }
	d := rep.Death
	add("the runner was killed by an OOM in the middle of a turn", d != nil && (d.Cause == local.CauseOOMKernel || d.Cause == local.CauseOOMWatchdog) && d.TurnOpen, d.Cause)
	add("same CLI session id before and after (resumed, not restarted)", rep.Resume == runner.ResumeResumed && d.SessionID != "" && rep.SessionAfter == d.SessionID,
		fmt.Sprintf("%s -> %s (%s)", d.SessionID, rep.SessionAfter, rep.Resume))
	recs := readEvents(filepath.Join(ws, runner.EventLogFile))
	initial, finished := 0, false
	for _, r := range recs {
		if r.Kind == runner.KindInput && r.Type == runner.SourceInitial {
			initial++
		}
		if r.Kind == runner.KindCLI && r.Type == "result" && strings.Contains(string(r.Data), "[tether-demo] finished") {
			finished = true
		}
	}
	rep.InitialSent = initial
	add("the initial prompt was delivered exactly once", initial == 1, fmt.Sprintf("%d times", initial))
	b, err := os.ReadFile(filepath.Join(ws, "artifacts", "demo-report.txt"))
	add("the agent finished its work after the recovery", finished && err == nil && len(b) > 0, "artifacts/demo-report.txt written, final turn done")
	// The transcript holds the turns before the kill: the resumed CLI saw
	// them (the build's marker is in the conversation it continues).
	tr := filepath.Join(ws, ".claude", "projects")
	found := false
	filepath.WalkDir(tr, func(p string, de os.DirEntry, err error) error {
		if err == nil && !de.IsDir() && strings.HasSuffix(p, d.SessionID+".jsonl") {
			if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), markBuilt) && strings.Contains(string(b), markFinished) {
				found = true
			}
		}
		return nil
	})
	add("one transcript holds the conversation from before and after the kill", found, "")
	return out
}

func readEvents(path string) []runner.Record {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []runner.Record
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<26)
	for sc.Scan() {
		var r runner.Record
		if json.Unmarshal(sc.Bytes(), &r) == nil {
			out = append(out, r)
		}
	}
	return out
}

var uploadedRe = regexp.MustCompile(`bytesUploaded=(\d+)`)

// syncStats sums the sync's "snapshot saved" log lines.
func syncStats(path string) (saves int, uploaded int64) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.Contains(line, "snapshot saved") {
			continue
		}
		saves++
		if m := uploadedRe.FindStringSubmatch(line); m != nil {
			n, _ := strconv.ParseInt(m[1], 10, 64)
			uploaded += n
		}
	}
	return saves, uploaded
}

func countSnapshots(ctx context.Context, url, ns, session string) int {
	st, err := store.Open(ctx, url)
	if err != nil {
		return -1
	}
	defer st.Close()
	repo, err := snapshot.OpenRepo(st, ns, session)
	if err != nil {
		return -1
	}
	ids, err := repo.SnapshotIDs(ctx)
	if err != nil {
		return -1
	}
	return len(ids)
}

// Print writes the report.
func (r *Report) Print(w io.Writer) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }
	fmt.Fprintf(w, "\n──────── tether demo report ────────\n")
	fmt.Fprintf(w, "session            %s (store %s)\n", r.Session, r.Store)
	fmt.Fprintf(w, "workspace          %s\n", r.Workspace)
	if d := r.Death; d != nil {
		fmt.Fprintf(w, "OOM kill           %s after the start, %s, runner life %d (pid %d), %s\n",
			ms(d.DiedAt.Sub(r.Start)), map[bool]string{true: "in the middle of a turn", false: "between turns"}[d.TurnOpen], d.Life, d.PID, d.Cause)
		fmt.Fprintf(w, "memory             limit %s, peak %s\n", local.FormatSize(d.MemoryLimit), local.FormatSize(d.MemoryPeak))
		fmt.Fprintf(w, "detected by        %s\n", d.Detail)
		if d.OOMDetectedAt != nil && d.GroupKilledAt != nil {
			poll := "the kernel's oom_kill counter, read every 20 ms"
			if d.Cause == local.CauseOOMWatchdog {
				poll = "the RSS watchdog, every 50 ms"
			}
			fmt.Fprintf(w, "whole group dead   %s after detection (runner, CLI, tools); detection: %s\n", ms(d.GroupKilledAt.Sub(*d.OOMDetectedAt)), poll)
		}
		if r.Hydrate != nil {
			fmt.Fprintf(w, "fresh workspace    wiped, then restored from snapshot %s: %d files, %s in %d ms\n", r.Hydrate.Snapshot, r.Hydrate.Files, local.FormatSize(r.Hydrate.Bytes), r.Hydrate.DurationMs)
		}
		if !r.ReadyAt.IsZero() {
			fmt.Fprintf(w, "time to recovery   %s from the kill to the runner resumed and ready\n", ms(r.ReadyAt.Sub(d.DiedAt)))
		}
		fmt.Fprintf(w, "CLI session        %s before, %s after (%s)\n", d.SessionID, r.SessionAfter, r.Resume)
	}
	fmt.Fprintf(w, "snapshots          %d saves by the sync, %d kept in the store, %s uploaded in all\n", r.Saves, r.Snapshots, local.FormatSize(r.Uploaded))
	fmt.Fprintf(w, "checked intact:\n")
	for _, c := range r.Checks {
		mark := "✓"
		if !c.OK {
			mark = "✗ FAILED"
		}
		note := ""
		if c.Note != "" {
			note = " — " + c.Note
		}
		fmt.Fprintf(w, "  %s %s%s\n", mark, c.What, note)
	}
	fmt.Fprintf(w, "wall time          %.1f s\n", r.Wall.Seconds())
	if r.OK() {
		fmt.Fprintf(w, "result             PASS\n")
	} else {
		fmt.Fprintf(w, "result             FAIL\n")
	}
}

// Hog allocates and touches memory mib MiB at a time until it holds total
// MiB, printing its progress: the demo's "command that needs too much
// memory".
func Hog(w io.Writer, totalMiB int) {
	var keep [][]byte
	for i := 0; i < totalMiB/16; i++ {
		b := make([]byte, 16<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = byte(i)
		}
		keep = append(keep, b)
		if (i+1)%16 == 0 {
			fmt.Fprintf(w, "load test: holding %d MiB\n", (i+1)*16)
		}
		time.Sleep(2 * time.Millisecond)
	}
	fmt.Fprintf(w, "load test: done with %d MiB\n", len(keep)*16)
}
