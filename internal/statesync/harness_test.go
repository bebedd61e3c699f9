package statesync

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/snapshot"
	"github.com/tether-dev/tether/internal/store"
	"github.com/tether-dev/tether/internal/store/storetest"
	"github.com/tether-dev/tether/test/agentwriter"
)

// The harness runs the sync loop and a writer as child processes (this test
// binary, re-executed) so that either can be killed with SIGKILL.
const childEnv = "TETHER_STATESYNC_TEST_CHILD"

func childMain() int {
	var err error
	switch os.Getenv(childEnv) {
	case "sync":
		err = childSync()
	case "writer":
		seq, _ := strconv.Atoi(os.Getenv("CHILD_SEQ"))
		err = agentwriter.Run(os.Getenv("CHILD_WORKSPACE"), os.Getenv("CHILD_LOG"), seq)
	default:
		err = fmt.Errorf("unknown child %q", os.Getenv(childEnv))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

func childSync() error {
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer cancel()
	st, err := store.Open(ctx, os.Getenv("CHILD_STORE"))
	if err != nil {
		return err
	}
	repo, err := snapshot.OpenRepo(st, "default", "harness")
	if err != nil {
		return err
	}
	cfg := Defaults()
	cfg.Workspace = os.Getenv("CHILD_WORKSPACE")
	cfg.CacheDir = os.Getenv("CHILD_CACHE")
	cfg.RepoInterval = 5 * time.Second
	s, err := New(cfg, repo, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

func child(t *testing.T, kind string, env ...string) *exec.Cmd {
	exe, err := os.Executable()
	must(t, err)
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), childEnv+"="+kind), env...)
	cmd.Stderr = os.Stderr
	must(t, cmd.Start())
	return cmd
}

func kills(def int) int {
	if n, err := strconv.Atoi(os.Getenv("TETHER_HARNESS_KILLS")); err == nil && n > 0 {
		return n
	}
	return def
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// TestDataLossWindow kills a writer at random moments while `sync` runs,
// lets the sync run 2 more seconds, restores the newest snapshot and
// compares it with the writer's log: the window is the age, at the kill, of
// the oldest operation missing from the snapshot (0 when nothing is missing).
// TETHER_HARNESS_KILLS sets the number of kills (the bench runs 50).
func TestDataLossWindow(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a writer and the sync loop as processes for a minute")
	}
	ws := t.TempDir()
	storeURL := storetest.FileURL(t.TempDir())
	logPath := filepath.Join(t.TempDir(), "writer.log")
	app := filepath.Join(ws, "repos/app")
	must(t, os.MkdirAll(app, 0o755))
	g := exec.Command("git", "init", "-q", "-b", "main", app)
	g.Env = agentwriter.GitEnv()
	if out, err := g.CombinedOutput(); err != nil {
		t.Fatalf("git init: %v %s", err, out)
	}
	must(t, os.MkdirAll(filepath.Join(ws, ".tether"), 0o755))
	must(t, os.MkdirAll(filepath.Join(ws, ".claude/projects/-ws"), 0o755))

	syncer := child(t, "sync", "CHILD_STORE="+storeURL, "CHILD_WORKSPACE="+ws, "CHILD_CACHE="+t.TempDir())
	defer func() { syncer.Process.Kill(); syncer.Wait() }()
	repo := openRepo(t, storeURL, "harness")
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	n := kills(8)
	var winT, winS, winR []time.Duration
	var nodeT, nodeS, nodeR []time.Duration // if the sync had died with the writer
	seq := 0
	for i := 0; i < n; i++ {
		w := child(t, "writer", "CHILD_WORKSPACE="+ws, "CHILD_LOG="+logPath, "CHILD_SEQ="+strconv.Itoa(seq))
		time.Sleep(time.Duration(300+rng.Intn(2500)) * time.Millisecond)
		must(t, w.Process.Signal(syscall.SIGKILL))
		w.Wait()
		killedAt := time.Now()
		atKill, err := repo.Latest(context.Background())
		must(t, err)
		time.Sleep(2 * time.Second)

		entries, err := agentwriter.ReadLog(logPath)
		must(t, err)
		if len(entries) > 0 {
			seq = entries[len(entries)-1].Seq
		}
		windows := func(id string) (tr, sid, rp time.Duration) {
			out := filepath.Join(t.TempDir(), "restored")
			defer os.RemoveAll(out)
			_, err := snapshot.Restore(context.Background(), repo, out, snapshot.RestoreOptions{Snapshot: id})
			must(t, err)
			present, err := agentwriter.ReadState(out)
			must(t, err)
			win := func(kind string) time.Duration { return present.Window(entries, kind, time.Time{}, killedAt) }
			tr = win(agentwriter.KindTranscript)
			sid = win(agentwriter.KindSessionID)
			rp = max(win(agentwriter.KindUntracked), win(agentwriter.KindCommit))
			return
		}
		a, b, c := windows("")
		winT, winS, winR = append(winT, a), append(winS, b), append(winR, c)
		if atKill != "" {
			a, b, c = windows(atKill)
			nodeT, nodeS, nodeR = append(nodeT, a), append(nodeS, b), append(nodeR, c)
		}
	}
	p50, p99 := func(d []time.Duration) time.Duration { return percentile(d, 0.5) }, func(d []time.Duration) time.Duration { return percentile(d, 0.99) }
	t.Logf("data-loss window over %d kills: transcript p50 %s p99 %s; session id p50 %s p99 %s; repository p50 %s p99 %s",
		n, p50(winT), p99(winT), p50(winS), p99(winS), p50(winR), p99(winR))
	t.Logf("if the sync had died with the writer (newest snapshot at the kill): transcript p50 %s p99 %s; session id p50 %s p99 %s; repository p50 %s p99 %s",
		p50(nodeT), p99(nodeT), p50(nodeS), p99(nodeS), p50(nodeR), p99(nodeR))
	if p99(winT) > 2*time.Second || p99(winS) > 2*time.Second {
		t.Errorf("transcript/session-id window p99 %s/%s exceeds 2s", p99(winT), p99(winS))
	}
	if p99(winR) > 5*time.Second {
		t.Errorf("repository window p99 %s exceeds 5s", p99(winR))
	}
	// Node loss (writer and sync die together): bounded by --max-delay plus
	// one save, with room for a loaded CI machine.
	if p99(nodeT) > 3*time.Second || p99(nodeS) > 3*time.Second || p99(nodeR) > 5*time.Second {
		t.Errorf("node-loss windows p99 transcript %s, session id %s, repository %s exceed 3s/3s/5s", p99(nodeT), p99(nodeS), p99(nodeR))
	}
	must(t, syncer.Process.Signal(syscall.SIGTERM))
	if err := syncer.Wait(); err != nil {
		t.Fatalf("sync did not finish its final snapshot: %v", err)
	}
}

// TestSyncKilledMidSave kills the sync process itself at random moments while
// a writer keeps changing the workspace: after every kill the newest
// snapshot restores and verify finds nothing wrong.
func TestSyncKilledMidSave(t *testing.T) {
	if testing.Short() {
		t.Skip("kills the sync process repeatedly")
	}
	ws := t.TempDir()
	storeURL := storetest.FileURL(t.TempDir())
	cache := t.TempDir()
	app := filepath.Join(ws, "repos/app")
	must(t, os.MkdirAll(app, 0o755))
	g := exec.Command("git", "init", "-q", "-b", "main", app)
	g.Env = agentwriter.GitEnv()
	if out, err := g.CombinedOutput(); err != nil {
		t.Fatalf("git init: %v %s", err, out)
	}
	must(t, os.MkdirAll(filepath.Join(ws, ".tether"), 0o755))
	must(t, os.MkdirAll(filepath.Join(ws, ".claude/projects/-ws"), 0o755))
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	big := make([]byte, 8<<20)
	rng.Read(big)
	must(t, os.WriteFile(filepath.Join(ws, "big.bin"), big, 0o644))
	w := child(t, "writer", "CHILD_WORKSPACE="+ws, "CHILD_LOG="+filepath.Join(t.TempDir(), "log"))
	defer func() { w.Process.Kill(); w.Wait() }()
	repo := openRepo(t, storeURL, "harness")
	n := kills(15)
	for i := 0; i < n; i++ {
		// Change the big file too, so saves have real work to be killed in.
		rng.Read(big[:1<<20])
		must(t, os.WriteFile(filepath.Join(ws, "big.bin"), big, 0o644))
		s := child(t, "sync", "CHILD_STORE="+storeURL, "CHILD_WORKSPACE="+ws, "CHILD_CACHE="+cache)
		time.Sleep(time.Duration(50+rng.Intn(1500)) * time.Millisecond)
		must(t, s.Process.Signal(syscall.SIGKILL))
		s.Wait()
		if id, _ := repo.Latest(context.Background()); id == "" {
			continue
		}
		out := filepath.Join(t.TempDir(), "restored")
		if _, err := snapshot.Restore(context.Background(), repo, out, snapshot.RestoreOptions{}); err != nil {
			t.Fatalf("kill %d: restore: %v", i, err)
		}
		os.RemoveAll(out)
	}
	// On a loaded machine every kill may land before a save completes. Then
	// and in any case, a sync started on what the kills left (store, cache)
	// must save again by itself.
	before, _ := repo.Latest(context.Background())
	s := child(t, "sync", "CHILD_STORE="+storeURL, "CHILD_WORKSPACE="+ws, "CHILD_CACHE="+cache)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if id, _ := repo.Latest(context.Background()); id != "" && id != before {
			break
		}
		if time.Now().After(deadline) {
			s.Process.Kill()
			s.Wait()
			t.Fatalf("after %d kills, a new sync saved nothing in 2 minutes (newest snapshot %q)", n, before)
		}
		time.Sleep(100 * time.Millisecond)
	}
	must(t, s.Process.Signal(syscall.SIGKILL))
	s.Wait()
	rep, err := snapshot.Verify(context.Background(), repo, snapshot.VerifyOptions{})
	must(t, err)
	if len(rep.Problems) > 0 {
		t.Fatalf("verify after %d kills: %q", n, rep.Problems)
	}
	t.Logf("%d kills of the sync process; %d snapshots verified", n, len(rep.Snapshots))
}
