package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/store"
	"github.com/tether-dev/tether/internal/store/storefault"
	"github.com/tether-dev/tether/internal/store/storetest"
)

// TestTakeEpochConcurrent: takers of one session, each with its own store
// client, race for epochs; no epoch is ever won twice, and the epochs won
// are 1..n without a gap.
func TestTakeEpochConcurrent(t *testing.T) {
	eachBackend(t, func(t *testing.T, url string) {
		const takers, each = 6, 4
		ctx := context.Background()
		var (
			mu  sync.Mutex
			won = map[uint64][]string{}
			wg  sync.WaitGroup
		)
		start := make(chan struct{})
		errs := make(chan error, takers*each)
		for range takers {
			repo := openRepo(t, url) // a client of its own, like another process
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for range each {
					w, err := TakeEpoch(ctx, repo, "test")
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					won[w.Epoch] = append(won[w.Epoch], w.ID)
					mu.Unlock()
				}
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		check := openRepo(t, url)
		epochs, err := check.Epochs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(epochs) != takers*each {
			t.Fatalf("%d epochs in the store, want %d", len(epochs), takers*each)
		}
		for i, e := range epochs {
			if e != uint64(i+1) {
				t.Fatalf("epochs %v have a gap at %d", epochs, i)
			}
			if len(won[e]) != 1 {
				t.Fatalf("epoch %d was won by %d takers: %v", e, len(won[e]), won[e])
			}
			w, err := check.LoadWriter(ctx, e)
			if err != nil || w.ID != won[e][0] {
				t.Fatalf("epoch %d holds %+v (%v), want the winner %s", e, w, err, won[e][0])
			}
		}
	})
}

// putWriter and putManifest write the objects a writer of that kind would.
func putWriter(t *testing.T, r *Repo, epoch uint64, observed string) {
	t.Helper()
	w := &Writer{Namespace: r.Namespace, Session: r.Session, Epoch: epoch, ID: newWriterID(), Host: "h", Via: "test", Observed: observed}
	putJSON(t, r, r.writerKey(epoch), w, false)
}

func putHeadManifest(t *testing.T, r *Repo, id string, epoch uint64) {
	t.Helper()
	m := &Manifest{Version: FormatVersion, ID: id, Namespace: r.Namespace, Session: r.Session, Epoch: epoch}
	if epoch > 0 {
		m.Writer = newWriterID()
	}
	putJSON(t, r, r.manifestKey(id), m, true)
}

func putJSON(t *testing.T, r *Repo, key string, v any, encoded bool) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if encoded {
		data = encode(data)
	}
	if err := r.st.PutIfAbsent(context.Background(), key, data); err != nil {
		t.Fatal(err)
	}
}

// TestStaleRule: a snapshot of epoch e is stale when some epoch E > e
// observed only snapshots older than it; nothing else is.
func TestStaleRule(t *testing.T) {
	ctx := context.Background()
	type snap struct {
		id    uint64
		epoch uint64
	}
	for _, tc := range []struct {
		name     string
		observed []string // Observed of epochs 1, 2, ...
		snaps    []snap
		stale    map[uint64]uint64 // snapshot -> fenced by
		latest   uint64
	}{
		{"no epochs: nothing is stale", nil, []snap{{1, 0}, {2, 0}}, nil, 2},
		{"legacy snapshots before the first epoch", []string{"0000000002"}, []snap{{1, 0}, {2, 0}, {3, 1}}, nil, 3},
		{"a legacy writer after the first epoch", []string{"0000000002"}, []snap{{1, 0}, {2, 0}, {3, 1}, {4, 0}}, map[uint64]uint64{4: 1}, 3},
		{"old writer's late snapshot", []string{"", "0000000002"}, []snap{{1, 1}, {2, 1}, {3, 1}, {4, 2}}, map[uint64]uint64{3: 2}, 4},
		{"late snapshot is newest", []string{"", "0000000002"}, []snap{{1, 1}, {2, 1}, {3, 1}}, map[uint64]uint64{3: 2}, 2},
		{"older snapshot of an old epoch is fine", []string{"", "0000000005"}, []snap{{4, 1}, {5, 1}, {6, 2}}, nil, 6},
		{"fenced by an intermediate epoch", []string{"", "0000000005", "0000000010"}, []snap{{5, 1}, {6, 1}, {10, 2}, {11, 2}, {12, 3}}, map[uint64]uint64{6: 2, 11: 3}, 12},
		{"a newer epoch that wrote nothing", []string{"", "0000000002"}, []snap{{1, 1}, {2, 1}}, nil, 2},
		{"a snapshot of an epoch never recorded", []string{"", "0000000001"}, []snap{{1, 1}, {2, 7}}, nil, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := openRepo(t, "file://"+t.TempDir())
			for i, o := range tc.observed {
				putWriter(t, repo, uint64(i+1), o)
			}
			var ids []string
			for _, s := range tc.snaps {
				putHeadManifest(t, repo, FormatID(s.id), s.epoch)
				ids = append(ids, FormatID(s.id))
			}
			stale, err := repo.Stale(ctx, ids)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tc.snaps {
				got, want := stale[FormatID(s.id)], tc.stale[s.id]
				switch {
				case want == 0 && got != nil:
					t.Errorf("snapshot %d (epoch %d) is %s, want current", s.id, s.epoch, got)
				case want != 0 && (got == nil || got.FencedBy != want || got.Epoch != s.epoch):
					t.Errorf("snapshot %d (epoch %d) is %v, want stale fenced by epoch %d", s.id, s.epoch, got, want)
				}
			}
			if latest, err := repo.Latest(ctx); err != nil || latest != FormatID(tc.latest) {
				t.Errorf("Latest = %q, %v; want %s", latest, err, FormatID(tc.latest))
			}
			if id, err := repo.Resolve(ctx, "latest"); err != nil || id != FormatID(tc.latest) {
				t.Errorf("Resolve(latest) = %q, %v; want %s", id, err, FormatID(tc.latest))
			}
		})
	}
}

// TestStaleRuleCorruptEpoch: an epoch object that does not decode still
// fences (the listing shows it) but marks nothing stale.
func TestStaleRuleCorruptEpoch(t *testing.T) {
	ctx := context.Background()
	repo := openRepo(t, "file://"+t.TempDir())
	putWriter(t, repo, 1, "")
	putHeadManifest(t, repo, FormatID(1), 1)
	if err := repo.st.PutIfAbsent(ctx, repo.writerKey(2), []byte("\x1b[2Jnot json")); err != nil {
		t.Fatal(err)
	}
	if latest, err := repo.Latest(ctx); err != nil || latest != FormatID(1) {
		t.Fatalf("Latest = %q, %v", latest, err)
	}
	own, err := repo.LoadWriter(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	var fe *FencedError
	if _, err := repo.checkFence(ctx, own); !errors.As(err, &fe) || fe.By.Epoch != 2 || strings.ContainsAny(err.Error(), "\x1b\n") {
		t.Fatalf("fence check with a corrupt newer epoch: %v", err)
	}
}

// TestFencedSaveRace plays the race fencing must close: the old writer's
// save passes its fence check, a new writer takes the session over and
// lists the snapshots, and only then does the old manifest land. The late
// snapshot is stale: never the newest, never a parent; the old writer's next
// save is refused with a FencedError and writes nothing.
func TestFencedSaveRace(t *testing.T) {
	eachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		st, err := store.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		fault := storefault.New(st, 1)
		repoA, _ := OpenRepo(fault, "default", "s1")
		repoB := openRepo(t, url)
		wsA, wsB := t.TempDir(), t.TempDir()

		// A legacy snapshot from before fencing: epoch 0, still current.
		writeFile(t, filepath.Join(wsA, "a.txt"), []byte("legacy"), 0o644)
		legacy, err := NewSaver(repoA, wsA, SaveOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := legacy.Save(ctx); err != nil {
			t.Fatal(err)
		}

		takes := 0
		a, err := NewSaver(repoA, wsA, SaveOptions{Writer: func(ctx context.Context) (*Writer, error) {
			takes++
			return TakeEpoch(ctx, repoA, "sync")
		}})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			writeFile(t, filepath.Join(wsA, "a.txt"), fmt.Appendf(nil, "A %d", i), 0o644)
			if _, err := a.Save(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if a.Writer() == nil || a.Writer().Epoch != 1 {
			t.Fatalf("A saves as %v, want epoch 1", a.Writer())
		}

		// A's next manifest write stalls after its fence check passed.
		fault.Add(storefault.Rule{Op: storefault.PutIfAbsent, KeyPrefix: repoA.manifestKey(""), Fault: storefault.Stall})
		writeFile(t, filepath.Join(wsA, "a.txt"), []byte("A late"), 0o644)
		late := make(chan error, 1)
		go func() { _, err := a.Save(ctx); late <- err }()
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := fault.WaitStalled(wctx, 1); err != nil {
			t.Fatal(err)
		}
		wB, err := TakeEpoch(ctx, repoB, "hydrate")
		if err != nil {
			t.Fatal(err)
		}
		if wB.Epoch != 2 || wB.Observed != FormatID(3) {
			t.Fatalf("B took %+v, want epoch 2 having observed snapshot 3", wB)
		}
		fault.Clear()
		fault.Release()
		if err := <-late; err != nil {
			t.Fatalf("A's late save: %v", err)
		}
		ids, _ := repoB.SnapshotIDs(ctx)
		if len(ids) != 4 {
			t.Fatalf("snapshots %v, want A's late one as 4", ids)
		}
		stale, err := repoB.Stale(ctx, ids)
		if err != nil || len(stale) != 1 || stale[FormatID(4)] == nil || stale[FormatID(4)].String() != "stale writer (epoch 1, fenced by epoch 2)" {
			t.Fatalf("Stale = %v, %v; want only snapshot 4, fenced by epoch 2", stale, err)
		}
		if latest, _ := repoB.Latest(ctx); latest != FormatID(3) {
			t.Fatalf("Latest = %s, want 3: the late snapshot must not win", latest)
		}
		if id, err := repoB.Resolve(ctx, "4"); err != nil || id != FormatID(4) {
			t.Fatalf("an explicit stale id must still resolve: %q %v", id, err)
		}

		b, err := NewSaver(repoB, wsB, SaveOptions{Writer: func(context.Context) (*Writer, error) { return wB, nil }})
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(wsB, "b.txt"), []byte("B"), 0o644)
		sb, err := b.Save(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if sb.ID != FormatID(5) || sb.Parent != FormatID(3) {
			t.Fatalf("B saved %s on parent %s, want 5 on 3 (never on the stale 4)", sb.ID, sb.Parent)
		}
		m, err := repoB.LoadManifest(ctx, sb.ID)
		if err != nil || m.Epoch != 2 || m.Writer != wB.ID {
			t.Fatalf("B's manifest records writer %q epoch %d (%v)", m.Writer, m.Epoch, err)
		}

		before := listKeys(t, st, "")
		writeFile(t, filepath.Join(wsA, "a.txt"), []byte("A after takeover"), 0o644)
		for range 2 {
			_, err = a.Save(ctx)
			var fe *FencedError
			if !errors.As(err, &fe) || !errors.Is(err, ErrFenced) || fe.By.Epoch != 2 || fe.Own.Epoch != 1 {
				t.Fatalf("A's save after the takeover: %v, want a FencedError by epoch 2", err)
			}
			if msg := err.Error(); !strings.Contains(msg, "taken over by writer epoch 2") || !strings.Contains(msg, "hydrate") || strings.Contains(msg, "\n") {
				t.Fatalf("fenced message %q", msg)
			}
		}
		if takes != 1 {
			t.Fatalf("A took an epoch %d times, want once", takes)
		}
		if after := listKeys(t, st, ""); strings.Join(after, ",") != strings.Join(before, ",") {
			t.Fatalf("a fenced save wrote to the store:\nbefore %v\nafter  %v", before, after)
		}

		// A saver without an epoch after epochs exist writes a stale snapshot.
		writeFile(t, filepath.Join(wsA, "a.txt"), []byte("legacy again"), 0o644)
		sl, err := legacy.Save(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if sl.Parent != FormatID(5) {
			t.Fatalf("legacy save took parent %s, want 5", sl.Parent)
		}
		if latest, _ := repoB.Latest(ctx); latest != FormatID(5) {
			t.Fatalf("Latest = %s after a save of epoch 0, want B's 5", latest)
		}
	})
}

func listKeys(t *testing.T, st store.Store, prefix string) []string {
	t.Helper()
	var keys []string
	if err := st.List(context.Background(), prefix, func(oi store.ObjectInfo) error {
		keys = append(keys, oi.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	return keys
}

// TestSaveListsEpochsTwice pins what fencing costs a steady save: it lists
// writers/ at the start (so that a fenced writer writes nothing; the same
// listing chooses the parent) and right before the manifest, and nothing
// else of writers/. Every listing is a round trip to the store per save.
func TestSaveListsEpochsTwice(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, storetest.FileURL(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fault := storefault.New(st, 1)
	repo, err := OpenRepo(fault, "default", "s1")
	if err != nil {
		t.Fatal(err)
	}
	ws := t.TempDir()
	s, err := NewSaver(repo, ws, SaveOptions{Writer: func(ctx context.Context) (*Writer, error) { return TakeEpoch(ctx, repo, "sync") }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 3 {
		writeFile(t, filepath.Join(ws, "a.txt"), fmt.Appendf(nil, "edit %d", i), 0o644)
		before := fault.Calls(storefault.List)
		if _, err := s.Save(ctx); err != nil {
			t.Fatal(err)
		}
		// writers/ twice, locks/ and snapshots/ once each.
		if n := fault.Calls(storefault.List) - before; i > 0 && n != 4 {
			t.Fatalf("save %d listed the store %d times, want 4", i, n)
		}
	}
}
