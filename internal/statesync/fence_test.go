package statesync

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/snapshot"
	"github.com/tether-dev/tether/internal/store/storetest"
)

// editor writes a new file into ws every gap (random up to max) until
// stopped, and returns how many it wrote.
func editor(ws, tag string, rng *rand.Rand, maxGap time.Duration) (stop func() int) {
	done := make(chan struct{})
	n := make(chan int, 1)
	gaps := make([]time.Duration, 256)
	for i := range gaps {
		gaps[i] = time.Duration(rng.Int64N(int64(maxGap)))
	}
	go func() {
		i := 0
		for {
			select {
			case <-done:
				n <- i
				return
			case <-time.After(gaps[i%len(gaps)]):
			}
			_ = os.WriteFile(filepath.Join(ws, fmt.Sprintf("%s-%04d.txt", tag, i)), []byte(tag), 0o644)
			i++
		}
	}()
	return func() int { close(done); return <-n }
}

func fastConfig(ws string) Config {
	c := testConfig(ws)
	c.Debounce = 20 * time.Millisecond
	c.MaxDelay = 100 * time.Millisecond
	c.Keep = 0
	return c
}

type runningSync struct {
	s      *Syncer
	cancel context.CancelFunc
	done   chan error
}

func runSyncer(t *testing.T, cfg Config, repo *snapshot.Repo) *runningSync {
	t.Helper()
	s, err := New(cfg, repo, quietLog(t))
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	rs := &runningSync{s: s, cancel: cancel, done: make(chan error, 1)}
	go func() { rs.done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); s.Close() })
	return rs
}

// TestTakeover: two syncs of one session in two workspaces, the second
// started by a hydrate, 20 times with random timing on file:// and MinIO. After
// the takeover every newest snapshot is the second workspace's, the first
// sync stops with a FencedError having written at most the one snapshot that
// was in flight (and that one stale), and the chain of snapshots that are
// not stale never goes back to the first writer.
func TestTakeover(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		reps := 20
		if b.Name == "gofakes3" || testing.Short() {
			reps = 5 // the fake adds no race of its own; file:// and MinIO get the 20
		}
		t.Run(b.Name, func(t *testing.T) {
			for rep := range reps {
				seed := uint64(time.Now().UnixNano())
				t.Run(fmt.Sprint(rep), func(t *testing.T) { takeover(t, b.URL, fmt.Sprintf("take%d", rep), seed) })
			}
		})
	}
}

func takeover(t *testing.T, url, session string, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	ctx := context.Background()
	repoA, repoB := openRepo(t, url, session), openRepo(t, url, session)
	wsA, wsB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")

	_, err := Hydrate(ctx, repoA, wsA, nil, nil)
	must(t, err)
	wA, err := readWriterFile(wsA)
	must(t, err)
	a := runSyncer(t, fastConfig(wsA), repoA)
	stopA := editor(wsA, "a", rng, 40*time.Millisecond)
	waitFor(t, repoA, 5*time.Second, "a snapshot by A", func(m *snapshot.Manifest) bool { return m.Writer == wA.ID })
	before := time.Duration(rng.Int64N(int64(300 * time.Millisecond)))
	time.Sleep(before)

	// The takeover, while A keeps editing and saving.
	_, err = Hydrate(ctx, repoB, wsB, nil, nil)
	must(t, err)
	wB, err := readWriterFile(wsB)
	must(t, err)
	if wB.Epoch <= wA.Epoch {
		t.Fatalf("B took epoch %d, A has %d", wB.Epoch, wA.Epoch)
	}
	takenAt := time.Now()

	// Watch what Latest says from now on: never a snapshot of A newer than
	// what B saw when it took over.
	var (
		mu     sync.Mutex
		wrong  []string
		watchQ = make(chan struct{})
		watchD = make(chan struct{})
	)
	go func() {
		defer close(watchD)
		for {
			select {
			case <-watchQ:
				return
			case <-time.After(5 * time.Millisecond):
			}
			id, err := repoB.Latest(ctx)
			if err != nil || id <= wB.Observed {
				continue
			}
			if m, err := repoB.LoadManifest(ctx, id); err == nil && m.Writer != wB.ID {
				mu.Lock()
				wrong = append(wrong, id)
				mu.Unlock()
			}
		}
	}()

	b := runSyncer(t, fastConfig(wsB), repoB)
	stopB := editor(wsB, "b", rng, 40*time.Millisecond)
	var errA error
	select {
	case errA = <-a.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("A still runs 10s after the takeover (seed %d)", seed)
	}
	stoppedIn := time.Since(takenAt)
	nA := stopA()
	var fe *snapshot.FencedError
	if !errors.As(errA, &fe) || fe.By.Epoch != wB.Epoch || fe.Own.ID != wA.ID {
		t.Fatalf("A's Run returned %v, want a FencedError by epoch %d", errA, wB.Epoch)
	}
	waitFor(t, repoB, 5*time.Second, "a snapshot by B", func(m *snapshot.Manifest) bool { return m.Writer == wB.ID })
	time.Sleep(time.Duration(rng.Int64N(int64(200 * time.Millisecond))))
	nB := stopB()
	must(t, os.WriteFile(filepath.Join(wsB, "b-final.txt"), []byte("b"), 0o644))
	b.cancel()
	must(t, <-b.done)
	close(watchQ)
	<-watchD
	if len(wrong) > 0 {
		t.Errorf("after the takeover Latest named snapshots %v of another writer than B (seed %d)", wrong, seed)
	}

	// The chain: A's snapshots, then B's; of A's after B's listing at most
	// the one in flight, and stale.
	ids, err := repoB.SnapshotIDs(ctx)
	must(t, err)
	stale, err := repoB.Stale(ctx, ids)
	must(t, err)
	seenB, lateA := false, 0
	for _, id := range ids {
		m, err := repoB.LoadManifest(ctx, id)
		must(t, err)
		switch {
		case m.Writer == wB.ID:
			if stale[id] != nil {
				t.Errorf("B's snapshot %s is marked %s", id, stale[id])
			}
			if m.Parent != "" && stale[m.Parent] != nil {
				t.Errorf("B's snapshot %s has the stale parent %s", id, m.Parent)
			}
			seenB = true
		case m.Writer == wA.ID && id > wB.Observed:
			lateA++
			if stale[id] == nil {
				t.Errorf("A's snapshot %s, saved after B took over having seen %s, is not stale", id, wB.Observed)
			}
		case m.Writer == wA.ID && seenB && stale[id] == nil:
			t.Errorf("interleaving: A's snapshot %s comes after B's and is not stale", id)
		}
	}
	if lateA > 1 {
		t.Errorf("A saved %d snapshots after the takeover, want at most the one in flight", lateA)
	}
	latest, err := repoB.Latest(ctx)
	must(t, err)
	m, err := repoB.LoadManifest(ctx, latest)
	must(t, err)
	if m.Writer != wB.ID {
		t.Fatalf("Latest %s is not B's", latest)
	}
	t.Logf("seed %d: takeover after %s of A; A stopped %s later (%d edits, %d late snapshot); B %d edits; %d snapshots, %d stale",
		seed, before, stoppedIn.Round(time.Millisecond), nA, lateA, nB, len(ids), len(stale))

	// And a hydrate elsewhere restores B's workspace.
	wsC := filepath.Join(t.TempDir(), "c")
	res, err := Hydrate(ctx, openRepo(t, url, session), wsC, nil, nil)
	must(t, err)
	if res.Snapshot != latest {
		t.Fatalf("hydrate restored %s, want B's %s", res.Snapshot, latest)
	}
	if _, err := os.Stat(filepath.Join(wsC, "b-final.txt")); err != nil {
		t.Fatalf("hydrate did not restore B's work: %v", err)
	}
}

// TestSyncWriterFile: a sync saves as the epoch hydrate recorded, takes one
// of its own when there is none, and does not trust a writer file copied
// from another workspace. The file never enters a snapshot.
func TestSyncWriterFile(t *testing.T) {
	ctx := context.Background()
	url := storetest.FileURL(t.TempDir())
	repo := openRepo(t, url, "wfile")
	ws := filepath.Join(t.TempDir(), "ws")
	_, err := Hydrate(ctx, repo, ws, nil, nil)
	must(t, err)
	w, err := readWriterFile(ws)
	must(t, err)
	a := runSyncer(t, fastConfig(ws), repo)
	waitFor(t, repo, 5*time.Second, "a snapshot", func(*snapshot.Manifest) bool { return true })
	id, _ := repo.Latest(ctx)
	man, err := repo.LoadManifest(ctx, id)
	must(t, err)
	if man.Writer != w.ID || man.Epoch != w.Epoch {
		t.Fatalf("the sync saved as %s/%d, want hydrate's %s/%d", man.Writer, man.Epoch, w.ID, w.Epoch)
	}
	if hasFile(man, WriterFile, -1) {
		t.Fatalf("%s is in snapshot %s", WriterFile, id)
	}
	a.cancel()
	must(t, <-a.done)

	// A copy of the workspace, writer file and all, is not the same writer.
	ws2 := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(ws2, ".tether"), 0o755))
	data, _ := os.ReadFile(filepath.Join(ws, WriterFile))
	forged := []byte(string(data[:len(data)-2]) + `, "writer": "00000000000000000000000000000000"}`)
	must(t, os.WriteFile(filepath.Join(ws2, WriterFile), forged, 0o644))
	b := runSyncer(t, fastConfig(ws2), repo)
	waitFor(t, repo, 5*time.Second, "a snapshot of the copy", func(m *snapshot.Manifest) bool { return m.Writer != w.ID })
	if bw := b.s.Writer(); bw == nil || bw.Epoch != w.Epoch+1 || bw.Via != "sync" {
		t.Fatalf("the copy saves as %+v, want a new epoch %d taken by the sync", bw, w.Epoch+1)
	}
	b.cancel()
	must(t, <-b.done)
}
