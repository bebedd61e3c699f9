package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tether-dev/tether/internal/store"
	"github.com/tether-dev/tether/internal/store/storetest"
)

func verifyClean(t *testing.T, repo *Repo, id string) {
	t.Helper()
	rep, err := Verify(context.Background(), repo, VerifyOptions{Snapshot: id})
	must(t, err)
	if len(rep.Problems) > 0 {
		t.Fatalf("snapshot %q does not verify: %v", id, rep.Problems)
	}
}

// chunkOf returns the only chunk of the file at rel in snapshot id.
func chunkOf(t *testing.T, repo *Repo, id, rel string) string {
	t.Helper()
	m, err := repo.LoadManifest(context.Background(), id)
	must(t, err)
	for _, e := range m.Entries {
		if e.Path == rel && len(e.Chunks) == 1 {
			return e.Chunks[0].ID
		}
	}
	t.Fatalf("snapshot %s has no one-chunk file %s", id, rel)
	return ""
}

// TestSaveBuildsOnNothingDamaged: with no stat cache (the parent manifest and
// its base object are read from the store), a torn manifest, a bit-rotten or
// lost base object under the newest snapshot do not stop the next save: it
// writes a full snapshot, with a warning naming the object, that verifies
// and restores to the workspace.
func TestSaveBuildsOnNothingDamaged(t *testing.T) {
	kinds := []struct {
		name   string
		damage func(t *testing.T, repo *Repo, m *Manifest) string
	}{
		{"torn-manifest", func(t *testing.T, repo *Repo, m *Manifest) string {
			key := repo.manifestKey(m.ID)
			obj, err := repo.st.Get(context.Background(), key)
			must(t, err)
			must(t, repo.st.Put(context.Background(), key, obj[:len(obj)/2]))
			return key
		}},
		{"rotten-base", func(t *testing.T, repo *Repo, m *Manifest) string {
			key := repo.objectKey(m.Base.ID)
			obj, err := repo.st.Get(context.Background(), key)
			must(t, err)
			obj[len(obj)-2] ^= 0x01
			must(t, repo.st.Put(context.Background(), key, obj))
			return key
		}},
		{"lost-base", func(t *testing.T, repo *Repo, m *Manifest) string {
			key := repo.objectKey(m.Base.ID)
			must(t, repo.st.Delete(context.Background(), key))
			return key
		}},
	}
	eachBackend(t, func(t *testing.T, url string) {
		for _, k := range kinds {
			t.Run(k.name, func(t *testing.T) {
				ctx := context.Background()
				st, err := store.Open(ctx, url)
				must(t, err)
				defer st.Close()
				repo, err := OpenRepo(st, "default", "cold-"+k.name)
				must(t, err)
				ws := t.TempDir()
				writeFile(t, filepath.Join(ws, "a.txt"), []byte("one\n"), 0o644)
				writeFile(t, filepath.Join(ws, "big.bin"), randBytes(newRand(3), 300<<10), 0o644)
				backdate(t, ws)
				first := save(t, repo, ws, SaveOptions{})
				m, err := repo.LoadManifest(ctx, first.ID)
				must(t, err)
				key := k.damage(t, repo, m)

				writeFile(t, filepath.Join(ws, "a.txt"), []byte("one\ntwo\n"), 0o644)
				// A new process: a Repo that has read nothing yet.
				st2, err := store.Open(ctx, url)
				must(t, err)
				defer st2.Close()
				repo, err = OpenRepo(st2, "default", "cold-"+k.name)
				must(t, err)
				s, err := NewSaver(repo, ws, SaveOptions{})
				must(t, err)
				defer s.Close()
				next, err := s.Save(ctx)
				if err != nil {
					t.Fatalf("save after %s: %v", k.name, err)
				}
				if next.Parent != "" || len(next.Warnings) != 1 || !strings.Contains(next.Warnings[0], key) {
					t.Fatalf("save after %s: parent %q, warnings %q; want a full save warning about %s", k.name, next.Parent, next.Warnings, key)
				}
				verifyClean(t, repo, next.ID)
				out := filepath.Join(t.TempDir(), "out")
				_, err = Restore(ctx, repo, out, RestoreOptions{})
				must(t, err)
				assertSameTree(t, ws, out)
			})
		}
	})
}

// TestLostChunkIsUploadedAgain: a chunk deleted from the store (a lifecycle
// rule) under a file that stays unchanged in the workspace, and under a git
// repository that stays unchanged, is uploaded again by the first save of a
// new Saver, with a warm stat cache (which trusts the file without reading
// it) and without one. The new snapshot verifies and restores both.
func TestLostChunkIsUploadedAgain(t *testing.T) {
	for _, warm := range []bool{true, false} {
		name := map[bool]string{true: "warm-cache", false: "no-cache"}[warm]
		t.Run(name, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, url string) {
				ctx := context.Background()
				repo, ws, app := repoWorkspace(t, url)
				writeFile(t, filepath.Join(app, "main.go"), []byte("package main\n"), 0o644)
				git(t, app, "add", "-A")
				git(t, app, "commit", "-qm", "first")
				writeFile(t, filepath.Join(ws, "keep.bin"), randBytes(newRand(5), 150<<10), 0o644)
				backdate(t, ws)
				settle()
				var opts SaveOptions
				if warm {
					opts.CacheDir = t.TempDir()
				}
				first := save(t, repo, ws, opts)
				m, err := repo.LoadManifest(ctx, first.ID)
				must(t, err)
				lost := []string{repo.objectKey(chunkOf(t, repo, first.ID, "keep.bin"))}
				if len(m.Repos) != 1 || len(m.Repos[0].Bundles) != 1 {
					t.Fatalf("want one repository with one bundle: %+v", m.Repos)
				}
				lost = append(lost, repo.objectKey(m.Repos[0].Bundles[0].Chunks[0].ID))
				backup := map[string][]byte{}
				for _, key := range lost {
					obj, err := repo.st.Get(ctx, key)
					must(t, err)
					backup[key] = obj
					must(t, repo.st.Delete(ctx, key))
				}
				// What hydrate relies on to fall back: the failure is damage.
				_, err = Restore(ctx, repo, filepath.Join(t.TempDir(), "r"), RestoreOptions{Snapshot: first.ID})
				if !IsDamaged(err) {
					t.Fatalf("restore with a lost file chunk and bundle chunk: %v; want damage", err)
				}
				must(t, repo.st.Put(ctx, lost[0], backup[lost[0]]))
				_, err = Restore(ctx, repo, filepath.Join(t.TempDir(), "r"), RestoreOptions{Snapshot: first.ID})
				if !IsDamaged(err) || !strings.Contains(err.Error(), lost[1]) {
					t.Fatalf("restore with a lost bundle chunk: %v; want damage naming %s", err, lost[1])
				}
				must(t, repo.st.Delete(ctx, lost[0]))

				s, err := NewSaver(repo, ws, opts)
				must(t, err)
				defer s.Close()
				next, err := s.Save(ctx)
				must(t, err)
				if next.ObjectsUploaded < 3 || len(next.Warnings) != 1 {
					t.Fatalf("save after losing %v: %+v; want them uploaded again with a warning", lost, next)
				}
				verifyClean(t, repo, next.ID)
				// The file's chunk is the same content, chunked the same: it
				// is back, and with it the old snapshot's copy of the file.
				// (The repository's new full bundle is a new capture, with
				// its own commit times: a different object.)
				if _, err := repo.st.Stat(ctx, lost[0]); err != nil {
					t.Fatalf("chunk of keep.bin not uploaded again: %v", err)
				}
				out := filepath.Join(t.TempDir(), "out")
				_, err = Restore(ctx, repo, out, RestoreOptions{Snapshot: next.ID})
				must(t, err)
				if gitView(t, filepath.Join(out, "repos/app")) != gitView(t, app) {
					t.Fatal("restored repository differs")
				}
				b, err := os.ReadFile(filepath.Join(out, "keep.bin"))
				must(t, err)
				if want, _ := os.ReadFile(filepath.Join(ws, "keep.bin")); string(b) != string(want) {
					t.Fatal("restored keep.bin differs")
				}
			})
		})
	}
}

// TestRunningSaverNoticesLostBase: the base object a long-lived Saver writes
// its deltas against is deleted under it; its next save sees that with one
// Stat and writes a new base, so its snapshot stays restorable.
func TestRunningSaverNoticesLostBase(t *testing.T) {
	ctx := context.Background()
	repo := openRepo(t, "file://"+t.TempDir())
	ws := t.TempDir()
	writeFile(t, filepath.Join(ws, "a.txt"), []byte("one\n"), 0o644)
	s, err := NewSaver(repo, ws, SaveOptions{})
	must(t, err)
	defer s.Close()
	first, err := s.Save(ctx)
	must(t, err)
	m, err := repo.LoadManifest(ctx, first.ID)
	must(t, err)
	must(t, repo.st.Delete(ctx, repo.objectKey(m.Base.ID)))
	writeFile(t, filepath.Join(ws, "a.txt"), []byte("one\ntwo\n"), 0o644)
	next, err := s.Save(ctx)
	must(t, err)
	if len(next.Warnings) != 1 || !strings.Contains(next.Warnings[0], m.Base.ID) {
		t.Fatalf("warnings %q; want one naming the lost base object", next.Warnings)
	}
	verifyClean(t, repo, next.ID)
}

// TestRepairReplacesRottenChunk: a chunk whose stored copy rotted (same
// size, one bit) is found by Verify; a save told to repair it replaces it
// from the unchanged file, and every snapshot verifies again.
func TestRepairReplacesRottenChunk(t *testing.T) {
	eachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		repo := openRepo(t, url)
		ws := t.TempDir()
		writeFile(t, filepath.Join(ws, "keep.bin"), randBytes(newRand(11), 120<<10), 0o644)
		backdate(t, ws)
		cache := t.TempDir()
		first := save(t, repo, ws, SaveOptions{CacheDir: cache})
		key := repo.objectKey(chunkOf(t, repo, first.ID, "keep.bin"))
		obj, err := repo.st.Get(ctx, key)
		must(t, err)
		obj[len(obj)/2] ^= 0x10
		must(t, repo.st.Put(ctx, key, obj))

		rep, err := Verify(ctx, repo, VerifyOptions{})
		must(t, err)
		if len(rep.Damaged) != 1 || repo.objectKey(rep.Damaged[0]) != key {
			t.Fatalf("verify: damaged %v, problems %v; want %s", rep.Damaged, rep.Problems, key)
		}
		// Without Repair the stat cache trusts the file and the listing
		// finds the object: a plain save cannot know.
		fixed := save(t, repo, ws, SaveOptions{CacheDir: cache, Repair: rep.Damaged})
		if fixed.ObjectsUploaded < 2 {
			t.Fatalf("repair save uploaded %d objects; want the chunk and the manifest", fixed.ObjectsUploaded)
		}
		rep, err = Verify(ctx, repo, VerifyOptions{})
		must(t, err)
		if len(rep.Problems) > 0 {
			t.Fatalf("after the repair: %v", rep.Problems)
		}
	})
}

// TestIdleSaverNoticesLostBase: a sync whose workspace does not change
// writes no snapshot (SkipUnchanged); when the newest snapshot's base object
// is lost meanwhile, its next rescan writes a whole snapshot instead of
// skipping forever over an unrestorable one.
func TestIdleSaverNoticesLostBase(t *testing.T) {
	ctx := context.Background()
	repo := openRepo(t, "file://"+t.TempDir())
	ws := t.TempDir()
	writeFile(t, filepath.Join(ws, "a.txt"), []byte("one\n"), 0o644)
	s, err := NewSaver(repo, ws, SaveOptions{SkipUnchanged: true})
	must(t, err)
	defer s.Close()
	first, err := s.Save(ctx)
	must(t, err)
	if st, err := s.Save(ctx); err != nil || !st.Unchanged || st.ID != first.ID {
		t.Fatalf("rescan of an unchanged workspace: %+v %v", st, err)
	}
	m, err := repo.LoadManifest(ctx, first.ID)
	must(t, err)
	must(t, repo.st.Delete(ctx, repo.objectKey(m.Base.ID)))
	next, err := s.Save(ctx)
	must(t, err)
	if next.Unchanged || next.ID == first.ID || len(next.Warnings) != 1 {
		t.Fatalf("rescan after the base object was lost: %+v; want a new snapshot and a warning", next)
	}
	verifyClean(t, repo, next.ID)
}

// TestKilledCaptureScratchGoes: what a capture killed mid-bundle left in
// its scratch directory (up to a whole bundle of the repository) is
// removed by the next capture of the repository, and a capture leaves
// nothing in the system's temporary directory.
func TestKilledCaptureScratchGoes(t *testing.T) {
	repo, ws, app := repoWorkspace(t, storetest.FileURL(t.TempDir()))
	writeFile(t, filepath.Join(app, "main.go"), []byte("package main\n"), 0o644)
	git(t, app, "add", "-A")
	git(t, app, "commit", "-qm", "first")
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	opts := SaveOptions{CacheDir: t.TempDir()}
	save(t, repo, ws, opts)
	sum := sha256.Sum256([]byte(ws + "\x00" + "repos/app"))
	scratch := filepath.Join(opts.CacheDir, "git", hex.EncodeToString(sum[:12]), "scratch")
	if err := os.MkdirAll(scratch, 0o700); err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(scratch, "capture.bundle")
	writeFile(t, leftover, randBytes(newRand(1), 1<<20), 0o600)
	writeFile(t, filepath.Join(app, "main.go"), []byte("package main\n// edit\n"), 0o644)
	settle()
	save(t, repo, ws, opts)
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a killed capture's bundle is still there after the next capture: %v", err)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("saves left %d entries in the temporary directory (first %s)", len(ents), ents[0].Name())
	}
}
