package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// manifestObject returns the stored (delta) form of a snapshot's manifest.
func manifestObject(t *testing.T, repo *Repo, id string) (*Manifest, int) {
	t.Helper()
	obj, err := repo.st.Get(context.Background(), repo.manifestKey(id))
	must(t, err)
	raw, err := decodeManifest(obj)
	must(t, err)
	m, err := unmarshalManifest(raw)
	must(t, err)
	return m, len(obj)
}

// A workspace of many files: the manifest of one save lists them all, and
// the next saves store only what changed.
func manyFiles(t *testing.T, ws string, n int) {
	rng := newRand(7)
	for i := 0; i < n; i++ {
		writeFile(t, filepath.Join(ws, fmt.Sprintf("d%02d/f%03d.txt", i%10, i)), randBytes(rng, 200+i), 0o644)
	}
	writeFile(t, filepath.Join(ws, "transcript.jsonl"), jsonl(rng, 3<<20), 0o644)
}

func TestManifestDeltas(t *testing.T) {
	eachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		repo := openRepo(t, url)
		ws := t.TempDir()
		manyFiles(t, ws, 300)
		cache := t.TempDir()
		first := save(t, repo, ws, SaveOptions{CacheDir: cache})
		m1, _ := manifestObject(t, repo, first.ID)
		baseObj, err := repo.st.Stat(ctx, repo.objectKey(m1.Base.ID))
		must(t, err)
		size1 := int(baseObj.Size) // the full listing, compressed
		if m1.Base == nil || len(m1.Changed) != 0 || len(m1.Entries) != 0 {
			t.Fatalf("first save: stored manifest has base %v, %d changed, %d entries; want a base and nothing else", m1.Base, len(m1.Changed), len(m1.Entries))
		}

		var digests []string
		var ids []string
		for i := 0; i < 3; i++ {
			f, err := os.OpenFile(filepath.Join(ws, "transcript.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
			must(t, err)
			_, err = f.Write([]byte(strings.Repeat("x", 1023) + "\n"))
			must(t, err)
			must(t, f.Close())
			must(t, os.Remove(filepath.Join(ws, fmt.Sprintf("d00/f%03d.txt", i*10))))
			// A new process each time: the delta is computed from the stat cache.
			st := save(t, repo, ws, SaveOptions{CacheDir: cache})
			m, size := manifestObject(t, repo, st.ID)
			if m.Base == nil || *m.Base != *m1.Base {
				t.Fatalf("save %d: base %v, want the first save's %v", i, m.Base, m1.Base)
			}
			// The directory d00 changed too: its mtime moved with the removal.
			var changed []string
			for _, e := range m.Changed {
				changed = append(changed, e.Path)
			}
			if strings.Join(changed, " ") != "d00 transcript.jsonl" || len(m.Removed) != i+1 {
				t.Fatalf("save %d: changed %v, removed %v; want d00 and the transcript, and %d removals", i, changed, m.Removed, i+1)
			}
			if size*10 > size1 || st.BytesUploaded > 8<<10 {
				t.Fatalf("save %d: manifest object %d bytes (first %d), %d bytes uploaded in all", i, size, size1, st.BytesUploaded)
			}
			t.Logf("append + removal: manifest object %d bytes (full listing %d), %d bytes uploaded", size, size1, st.BytesUploaded)
			digests = append(digests, treeDigest(t, ws))
			ids = append(ids, st.ID)
		}
		for i, id := range ids {
			out := filepath.Join(t.TempDir(), "out")
			_, err := Restore(ctx, repo, out, RestoreOptions{Snapshot: id})
			must(t, err)
			if got := treeDigest(t, out); got != digests[i] {
				t.Fatalf("snapshot %s restores a different tree", id)
			}
		}
	})
}

// When the differences outgrow an eighth of the base, a save writes a new
// base; snapshots on the old base still restore, and prune drops the old base
// once no kept snapshot uses it.
func TestManifestRebase(t *testing.T) {
	ctx := context.Background()
	repo := openRepo(t, "file://"+t.TempDir())
	ws := t.TempDir()
	manyFiles(t, ws, 200)
	first := save(t, repo, ws, SaveOptions{})
	m1, _ := manifestObject(t, repo, first.ID)
	digest1 := treeDigest(t, ws)

	rng := newRand(9)
	var last *SaveStats
	for i := 0; i < 200; i += 20 {
		for j := i; j < i+20; j++ {
			writeFile(t, filepath.Join(ws, fmt.Sprintf("d%02d/f%03d.txt", j%10, j)), randBytes(rng, 300), 0o644)
		}
		last = save(t, repo, ws, SaveOptions{})
	}
	mLast, _ := manifestObject(t, repo, last.ID)
	if *mLast.Base == *m1.Base {
		t.Fatal("every file changed, yet the last save still deltas against the first base")
	}
	out := filepath.Join(t.TempDir(), "out")
	_, err := Restore(ctx, repo, out, RestoreOptions{Snapshot: first.ID})
	must(t, err)
	if got := treeDigest(t, out); got != digest1 {
		t.Fatal("the first snapshot restores a different tree after a rebase")
	}
	if _, err := Prune(ctx, repo, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.st.Stat(ctx, repo.objectKey(m1.Base.ID)); err == nil {
		t.Fatal("prune kept the first base object, which no kept snapshot uses")
	}
	out = filepath.Join(t.TempDir(), "out")
	_, err = Restore(ctx, repo, out, RestoreOptions{})
	must(t, err)
	assertSameTree(t, ws, out)
}

// A snapshot whose base object is lost or damaged is reported by name, by
// restore and by verify; nothing is restored from it.
func TestManifestBaseMissingOrCorrupt(t *testing.T) {
	ctx := context.Background()
	repo := openRepo(t, "file://"+t.TempDir())
	ws := t.TempDir()
	manyFiles(t, ws, 20)
	st := save(t, repo, ws, SaveOptions{})
	m, _ := manifestObject(t, repo, st.ID)
	key := repo.objectKey(m.Base.ID)
	obj, err := repo.st.Get(ctx, key)
	must(t, err)

	must(t, repo.st.Put(ctx, key, encode([]byte(`{"entries":[]}`))))
	repo, err = OpenRepo(repo.st, repo.Namespace, repo.Session) // no base cached in memory
	must(t, err)
	_, err = Restore(ctx, repo, filepath.Join(t.TempDir(), "out"), RestoreOptions{})
	var corrupt *CorruptError
	if !errors.As(err, &corrupt) || corrupt.Key != key {
		t.Fatalf("restore with a damaged base: %v, want a CorruptError naming %s", err, key)
	}

	must(t, repo.st.Delete(ctx, key))
	_, err = Restore(ctx, repo, filepath.Join(t.TempDir(), "out"), RestoreOptions{})
	var missing *MissingError
	if !errors.As(err, &missing) || missing.Key != key {
		t.Fatalf("restore without its base: %v, want a MissingError naming %s", err, key)
	}
	rep, err := Verify(ctx, repo, VerifyOptions{})
	must(t, err)
	if len(rep.Problems) == 0 || !strings.Contains(strings.Join(rep.Problems, "\n"), key) {
		t.Fatalf("verify without the base object: %v, want a problem naming %s", rep.Problems, key)
	}
	must(t, repo.st.Put(ctx, key, obj))
	rep, err = Verify(ctx, repo, VerifyOptions{})
	must(t, err)
	if len(rep.Problems) > 0 {
		t.Fatal(rep.Problems)
	}
}

func TestEntryLessIsWalkOrder(t *testing.T) {
	// filepath.WalkDir order: a directory's children right after it, names sorted.
	walk := []string{"a", "a/b", "a/b/c", "a-b", "a.txt", "a0", "b"}
	for i := range walk {
		for j := range walk {
			if got, want := entryLess(walk[i], walk[j]), i < j; got != want {
				t.Errorf("entryLess(%q, %q) = %v, want %v", walk[i], walk[j], got, want)
			}
		}
	}
}

// A file appended to just before a save is "racy": the next save cannot
// trust its stat and reads it again. Finding the same content, it must keep
// the chunks it had: chunking the file afresh would cut its tail differently
// and upload it again (a 1 KiB append then cost a whole tail chunk).
func TestRacyAppendedFileKeepsItsChunks(t *testing.T) {
	repo := openRepo(t, "file://"+t.TempDir())
	ws := t.TempDir()
	p := filepath.Join(ws, "transcript.jsonl")
	writeFile(t, p, jsonl(newRand(3), 3<<20), 0o644)
	backdate(t, ws)
	s, err := NewSaver(repo, ws, SaveOptions{})
	must(t, err)
	_, err = s.Save(context.Background())
	must(t, err)
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	_, err = f.Write(jsonl(newRand(4), 1024))
	must(t, err)
	must(t, f.Close())
	app, err := s.Save(context.Background()) // the append is racy here
	must(t, err)
	again, err := s.Save(context.Background())
	must(t, err)
	if again.BytesRead == 0 {
		t.Fatal("the racy file was trusted from its stat; this test needs it re-read")
	}
	if again.ObjectsUploaded != 1 || !again.Unchanged {
		t.Fatalf("saving an unchanged (racy) file again uploaded %d objects (%d bytes), unchanged=%v; want only the manifest", again.ObjectsUploaded, again.BytesUploaded, again.Unchanged)
	}
	t.Logf("append: %d bytes uploaded; re-read of the racy file: %d bytes read, %d uploaded", app.BytesUploaded, again.BytesRead, again.BytesUploaded)
}
