// Command compare measures tether next to the reference platform's backup
// method (rclone sync + git bundle, see baseline.sh) on one generated
// workspace and one MinIO server, and writes docs/benchmarks.md and
// docs/benchmarks.png.
//
// It needs git, rclone (hack/install-rclone.sh), the MinIO binary
// (hack/install-minio.sh) and a built tether binary; `make bench-compare`
// provides all of them. Flags shrink the run for development (-scale, -runs,
// -kills, -baseline-kills).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/tether-dev/tether/test/agentwriter"
)

type config struct {
	scale         float64
	runs          int
	kills         int
	baselineKills int
	chaos         int
	timeScale     float64
	maxKill       time.Duration
	tether        string
	dir           string
	out, png      string
	keep          bool
	onlyWorkspace string
}

func main() {
	if os.Getenv(childEnv) == "measure" {
		os.Exit(measureChild())
	}
	if os.Getenv(childEnv) == "writer" {
		// The writer runs until it is killed; it returns only on failure.
		seq, _ := strconv.Atoi(os.Getenv("CHILD_SEQ"))
		fmt.Fprintln(os.Stderr, "writer:", agentwriter.Run(os.Getenv("CHILD_WORKSPACE"), os.Getenv("CHILD_LOG"), seq))
		os.Exit(1)
	}
	var c config
	flag.Float64Var(&c.scale, "scale", 1, "size of the workspace relative to the reference (200 MiB transcripts, 50 MiB artifacts, ~300 MiB git history, 10k files)")
	flag.IntVar(&c.runs, "runs", 5, "runs per figure (the median is reported)")
	flag.IntVar(&c.kills, "kills", 50, "kills in tether's data-loss harness (TETHER_HARNESS_KILLS); 0 skips it")
	flag.IntVar(&c.baselineKills, "baseline-kills", 20, "kills in the baseline's data-loss harness; 0 skips it")
	flag.IntVar(&c.chaos, "chaos", 0, "SIGKILLs in a local-mode chaos run (test/chaos, needs the Claude CLI: make claude-cli) for the recovery time; 0 leaves the figure out")
	flag.Float64Var(&c.timeScale, "time-scale", 30, "the baseline harness runs the reference schedule this many times faster and multiplies its windows back")
	flag.DurationVar(&c.maxKill, "max-kill", 15*time.Second, "the baseline harness kills at a random moment up to this long after the session starts (scaled time)")
	flag.StringVar(&c.tether, "tether", "bin/tether", "tether binary (built with go build ./cmd/tether when missing)")
	flag.StringVar(&c.dir, "dir", "", "scratch directory (default: a new temp dir, removed afterwards)")
	flag.StringVar(&c.out, "out", "docs/benchmarks.md", "markdown report to write")
	flag.StringVar(&c.png, "png", "docs/benchmarks.png", "chart to write (linked from the report by its base name)")
	flag.BoolVar(&c.keep, "keep", false, "keep the scratch directory")
	flag.StringVar(&c.onlyWorkspace, "only-workspace", "", "generate the reference workspace into this (new) directory and exit: for profiling tether on it by hand")
	flag.Parse()
	if c.onlyWorkspace != "" {
		if err := generateWorkspace(context.Background(), c.onlyWorkspace, referenceSizes(c.scale)); err != nil {
			fmt.Fprintln(os.Stderr, "compare:", err)
			os.Exit(1)
		}
		return
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run1(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Printf("%s "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05")}, args...)...)
}

// results is everything the report shows.
type phase struct {
	name string
	took time.Duration
}

type results struct {
	cfg                    config
	machine                machine
	started                time.Time
	total                  time.Duration
	genTime                time.Duration
	wsFiles                int
	wsBytes, gitBytes      int64
	repoFiles              int
	initialT, initialB     sample
	cases                  []caseResult
	restoreT, restoreB     series
	fidT, fidB             fidelity
	tetherWin              *tetherWindows
	tetherWinErr           error
	baseWin                *windows
	computedTr, computedRp quantiles
	recovery               string
	recoveryErr            error
	phases                 []phase
}

func run1(ctx context.Context, c config) error {
	res := &results{cfg: c, started: time.Now()}
	res.machine = describeMachine()
	logf("machine: %s", res.machine)
	for _, tool := range []string{"git", "rclone"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not on PATH; run it through `make bench-compare`, which installs rclone into ~/.cache/tether/bin and puts that first on PATH", tool)
		}
	}
	scratch := c.dir
	if scratch == "" {
		d, err := os.MkdirTemp("", "tether-compare-")
		if err != nil {
			return err
		}
		scratch = d
		if !c.keep {
			defer os.RemoveAll(d)
		}
	}
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		return err
	}
	e := &env{ws: filepath.Join(scratch, "ws"), scratch: scratch, cacheDir: filepath.Join(scratch, "tether-cache"), script: filepath.Join(scratch, "baseline.sh")}
	if err := os.WriteFile(e.script, baselineScript, 0o755); err != nil {
		return err
	}
	tether, err := filepath.Abs(c.tether)
	if err != nil {
		return err
	}
	if _, err := os.Stat(tether); err != nil {
		logf("building %s", c.tether)
		if out, err := exec.Command("go", "build", "-o", tether, "./cmd/tether").CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/tether: %v: %s", err, out)
		}
	}
	e.tether = tether

	sz := referenceSizes(c.scale)
	logf("generating the workspace (scale %.3g) in %s", c.scale, e.ws)
	t0 := time.Now()
	if err := generateWorkspace(ctx, e.ws, sz); err != nil {
		return err
	}
	res.genTime = time.Since(t0)
	mark := time.Now()
	lap := func(name string) {
		res.phases = append(res.phases, phase{name, time.Since(mark)})
		mark = time.Now()
	}
	res.wsFiles, res.wsBytes = dirSize(e.ws)
	_, res.gitBytes = dirSize(filepath.Join(e.ws, "repos/app/.git"))
	res.repoFiles = countLines(gitOut(filepath.Join(e.ws, "repos/app"), "ls-files"))
	logf("workspace: %d files, %s (git history %s, %d tracked files) in %s", res.wsFiles, human(res.wsBytes), human(res.gitBytes), res.repoFiles, res.genTime.Round(time.Second))

	m, err := startMinio(filepath.Join(scratch, "minio"))
	if err != nil {
		return err
	}
	defer m.stop()
	e.minio = m
	for _, b := range []string{"bench:baseline", "bench:baseline-kill", "bench:tether"} {
		if _, err := run(ctx, m.rcloneEnv(), "rclone", "mkdir", b); err != nil {
			return err
		}
	}
	logf("MinIO at %s", m.Endpoint)

	// The first capture of each method uploads everything: measured once.
	if res.initialB, err = e.baseline(ctx, "backup"); err != nil {
		return err
	}
	if res.initialT, err = e.save(ctx); err != nil {
		return err
	}
	logf("first capture: tether %s cpu %s up %s | baseline %s cpu %s up %s", res.initialT.Wall.Round(time.Millisecond), res.initialT.CPU.Round(time.Millisecond), human(res.initialT.Uploaded),
		res.initialB.Wall.Round(time.Millisecond), res.initialB.CPU.Round(time.Millisecond), human(res.initialB.Uploaded))

	logf("starting a tether sync sidecar on the workspace (its first snapshot uploads everything)")
	sc, err := e.startSidecar(ctx)
	if err != nil {
		return err
	}
	res.cases, err = measureCases(ctx, e, c.runs, sc, logf)
	sc.stop()
	if err != nil {
		return err
	}
	lap("MinIO start, first captures, the four cases")

	// Both stores get the final state (not measured), then restore.
	if _, err := e.baseline(ctx, "backup"); err != nil {
		return err
	}
	if _, err := e.save(ctx); err != nil {
		return err
	}
	for r := 0; r < c.runs; r++ {
		dt, db := filepath.Join(scratch, "restore-tether"), filepath.Join(scratch, "restore-baseline")
		st, err := e.restoreTether(ctx, dt)
		if err != nil {
			return err
		}
		sb, err := e.restoreBaseline(ctx, db)
		if err != nil {
			return err
		}
		res.restoreT, res.restoreB = append(res.restoreT, st), append(res.restoreB, sb)
		if r == 0 {
			if res.fidT, err = compareWorkspaces(e.ws, dt); err != nil {
				return err
			}
			if res.fidB, err = compareWorkspaces(e.ws, db); err != nil {
				return err
			}
			logf("  restored workspace: tether %s; baseline %s", res.fidT, res.fidB)
		}
		logf("  restore run %d: tether %s cpu %s | baseline %s cpu %s", r, st.Wall.Round(time.Millisecond), st.CPU.Round(time.Millisecond), sb.Wall.Round(time.Millisecond), sb.CPU.Round(time.Millisecond))
		os.RemoveAll(dt)
		os.RemoveAll(db)
	}
	// The big workspace is done with: free the disk before the harnesses.
	os.RemoveAll(e.ws)
	lap("restores")

	lo := time.Duration(float64(200*time.Millisecond) * c.timeScale)
	hi := time.Duration(float64(c.maxKill) * c.timeScale)
	res.computedTr, res.computedRp = computedWindows(lo, hi)
	if c.baselineKills > 0 {
		logf("baseline data-loss harness: %d kills, schedule / %.0f", c.baselineKills, c.timeScale)
		h := &baselineHarness{e: e, scale: c.timeScale, trials: c.baselineKills, maxKill: c.maxKill, logf: logf}
		w, err := h.run(ctx)
		if err != nil {
			return err
		}
		res.baseWin = &w
		lap("baseline kill harness")
	}
	if c.kills > 0 {
		logf("tether data-loss harness: go test -run TestDataLossWindow ./internal/statesync with %d kills", c.kills)
		w, err := runTetherHarness(ctx, c.kills)
		res.tetherWin, res.tetherWinErr = &w, err
		if err != nil {
			logf("  %v", err)
		} else {
			lap("tether kill harness (go test, compile included)")
			logf("  %d kills in %s: transcript p99 %s, session id p99 %s, repository p99 %s (test passed: %v)", w.Kills, w.Wall.Round(time.Second), w.Transcript.P99, w.SessionID.P99, w.Repo.P99, w.Passed)
		}
	}
	if c.chaos > 0 {
		logf("local-mode chaos run: go test -run TestChaos ./test/chaos with %d kills", c.chaos)
		rec, err := runChaos(ctx, e.tether, c.chaos)
		if err != nil {
			logf("  %v", err)
			res.recoveryErr = err
		} else {
			res.recovery = rec
			lap("local-mode chaos run (go test, compile included)")
			logf("  recovery time %s", rec)
		}
	}
	res.total = time.Since(res.started)
	for _, p := range []string{c.out, c.png} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
	}
	if err := writeChart(res, c.png); err != nil {
		return err
	}
	if err := writeReport(res, c.out, filepath.Base(c.png)); err != nil {
		return err
	}
	logf("wrote %s and %s; the whole run took %s", c.out, c.png, res.total.Round(time.Second))
	return nil
}

func countLines(s string) int {
	n := 0
	for _, c := range s {
		if c == '\n' {
			n++
		}
	}
	return n
}
