package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "measure" { // run() re-executes the test binary
		os.Exit(measureChild())
	}
	os.Exit(m.Run())
}

// TestRunPeakRSS checks that a small child's peak RSS is its own, not this
// process's: Linux charges the peak of the process that execs into the child.
func TestRunPeakRSS(t *testing.T) {
	ballast := make([]byte, 256<<20)
	for i := range ballast {
		ballast[i] = 1
	}
	u, err := run(t.Context(), nil, "sh", "-c", "true")
	must(t, err)
	if u.MaxRSS <= 0 || u.MaxRSS > 100<<20 {
		t.Errorf("peak RSS of sh -c true = %d bytes; want a small positive figure, not this process's %d MiB", u.MaxRSS, len(ballast)>>20)
	}
	if _, err := run(t.Context(), nil, "sh", "-c", "exit 3"); err == nil {
		t.Error("a failing child reported no error")
	}
}

func TestComputedWindowsSteadyState(t *testing.T) {
	tr, rp := computedWindows(time.Hour, 2*time.Hour)
	// Uniform over one 60 s sync period and one 300 s repo-backup period.
	if tr.P50 < 28*time.Second || tr.P50 > 32*time.Second || tr.P99 < 58*time.Second || tr.P99 > 60*time.Second {
		t.Errorf("transcript window %+v, want p50 ~30s, p99 ~59s", tr)
	}
	if rp.P50 < 140*time.Second || rp.P50 > 160*time.Second || rp.P99 < 290*time.Second || rp.P99 > 300*time.Second {
		t.Errorf("repository window %+v, want p50 ~150s, p99 ~297s", rp)
	}
	// Before the first sync at 30 s everything since the start is lost.
	tr, rp = computedWindows(time.Second, 29*time.Second)
	if tr.P99 < 28*time.Second || rp.P99 < 28*time.Second {
		t.Errorf("windows before the first sync %+v %+v, want the whole session", tr, rp)
	}
}

func TestRcloneBytes(t *testing.T) {
	stderr := []byte(`{"level":"warning","msg":"config"}
{"level":"warning","msg":"\nTransferred: 18 B","stats":{"bytes":18,"checks":2}}
not json
{"level":"warning","msg":"...","stats":{"bytes":1000}}
`)
	if n := rcloneBytes(stderr); n != 1018 {
		t.Fatalf("rcloneBytes = %d, want 1018", n)
	}
}

// TestBaselineScriptRoundTrip runs baseline.sh's backup and restore against a
// local rclone path: committed history and a text-only staged and unstaged
// edit come back; untracked files do not (the reference's hole, which the
// report shows).
func TestBaselineScriptRoundTrip(t *testing.T) {
	if _, err := exec.LookPath("rclone"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("rclone is not on PATH: `make test` installs it (hack/install-rclone.sh puts it in ~/.cache/tether/bin, which make puts first on PATH)")
		}
		t.Skip("rclone is not on PATH: run the tests through `make test`, or hack/install-rclone.sh and put ~/.cache/tether/bin on PATH")
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "baseline.sh")
	must(t, os.WriteFile(script, baselineScript, 0o755))
	ws := filepath.Join(dir, "ws")
	app := filepath.Join(ws, "repos/app")
	must(t, os.MkdirAll(app, 0o755))
	must(t, os.MkdirAll(filepath.Join(ws, ".claude"), 0o755))
	must(t, os.WriteFile(filepath.Join(ws, ".claude/t.jsonl"), []byte("{}\n"), 0o644))
	ctx := t.Context()
	must(t, git(ctx, app, "init", "-q", "-b", "main"))
	must(t, os.WriteFile(filepath.Join(app, "a.go"), []byte("package a\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(app, "b.go"), []byte("package b\n"), 0o644))
	must(t, git(ctx, app, "add", "-A"))
	must(t, git(ctx, app, "commit", "-q", "-m", "one"))
	must(t, os.WriteFile(filepath.Join(app, "a.go"), []byte("package a\n// staged\n"), 0o644))
	must(t, git(ctx, app, "add", "a.go"))
	must(t, os.WriteFile(filepath.Join(app, "b.go"), []byte("package b\n// unstaged\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(app, "untracked.txt"), []byte("x"), 0o644))
	env := []string{"WS=" + ws, "REMOTE=" + filepath.Join(dir, "remote"), "RCLONE_CONFIG=/dev/null"}
	u, err := run(ctx, env, "bash", script, "backup")
	must(t, err)
	if n := rcloneBytes(u.Stderr); n == 0 {
		t.Errorf("backup reported 0 bytes uploaded; stderr: %s", u.Stderr)
	}
	out := filepath.Join(dir, "restored")
	_, err = run(ctx, env, "bash", script, "restore", out)
	must(t, err)
	f, err := compareWorkspaces(ws, out)
	must(t, err)
	if len(f.Missing) != 1 || f.Missing[0] != "repos/app/untracked.txt" || len(f.Differs) != 0 {
		t.Errorf("restore: %s; want only repos/app/untracked.txt missing", f)
	}
	if got := gitOut(filepath.Join(out, "repos/app"), "diff", "--cached", "--name-only"); got != "a.go\n" {
		t.Errorf("staged after restore: %q, want a.go", got)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
