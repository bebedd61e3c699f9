package snapshot

import (
	"context"
	"errors"
	"math/rand"
	"path/filepath"
	"testing"

	"github.com/tether-dev/tether/internal/store"
)

func countObjects(t *testing.T, repo *Repo) int {
	n := 0
	must(t, repo.st.List(context.Background(), repo.base+"objects/", func(store.ObjectInfo) error { n++; return nil }))
	return n
}

func TestPrune(t *testing.T) {
	eachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		repo := openRepo(t, url)
		ws := t.TempDir()
		rng := rand.New(rand.NewSource(4))
		var digests []string
		for i := 0; i < 5; i++ {
			writeFile(t, filepath.Join(ws, "changing.bin"), randBytes(rng, 100<<10), 0o644)
			writeFile(t, filepath.Join(ws, "stable.txt"), []byte("same in every snapshot\n"), 0o644)
			save(t, repo, ws, SaveOptions{})
			digests = append(digests, treeDigest(t, ws))
		}
		// 5 versions of changing.bin, stable.txt, and the one base object
		// every manifest is a delta against (the deltas stay small).
		if n := countObjects(t, repo); n != 7 {
			t.Fatalf("%d objects before prune, want 7", n)
		}
		ps, err := Prune(ctx, repo, 2)
		must(t, err)
		if len(ps.RemovedSnapshots) != 3 || ps.RemovedObjects != 3 {
			t.Fatalf("prune removed %v snapshots and %d objects", ps.RemovedSnapshots, ps.RemovedObjects)
		}
		if n := countObjects(t, repo); n != 4 {
			t.Fatalf("%d objects after prune, want 4", n)
		}
		for i, id := range []string{FormatID(4), FormatID(5)} {
			out := filepath.Join(t.TempDir(), "out")
			_, err := Restore(ctx, repo, out, RestoreOptions{Snapshot: id})
			must(t, err)
			if got := treeDigest(t, out); got != digests[3+i] {
				t.Fatalf("snapshot %s restores a different tree after prune", id)
			}
		}
		rep, err := Verify(ctx, repo, VerifyOptions{})
		must(t, err)
		if len(rep.Problems) > 0 {
			t.Fatal(rep.Problems)
		}
	})
}

func TestPruneWaitsForSave(t *testing.T) {
	ctx := context.Background()
	repo := openRepo(t, "file://"+t.TempDir())
	ws := t.TempDir()
	writeFile(t, filepath.Join(ws, "f"), []byte("1"), 0o644)
	save(t, repo, ws, SaveOptions{})
	writeFile(t, filepath.Join(ws, "f"), []byte("2"), 0o644)
	save(t, repo, ws, SaveOptions{})

	// A save in progress: its chunks are uploaded, its manifest not yet.
	unlock, err := repo.lock(ctx, lockShared)
	must(t, err)
	pending := []byte("chunk of a snapshot being written")
	_, err = repo.writeChunk(ctx, hashID(pending), pending)
	must(t, err)

	_, err = Prune(ctx, repo, 1)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("prune during a save: %v, want ErrLocked", err)
	}
	if _, err := repo.st.Stat(ctx, repo.objectKey(hashID(pending))); err != nil {
		t.Fatalf("prune deleted the chunk of a snapshot being written: %v", err)
	}
	unlock()
	if _, err := Prune(ctx, repo, 1); err != nil {
		t.Fatal(err)
	}
}
