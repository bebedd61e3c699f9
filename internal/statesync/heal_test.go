package statesync

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/tether-dev/tether/internal/snapshot"
	"github.com/tether-dev/tether/internal/store"
	"github.com/tether-dev/tether/internal/store/storefault"
	"github.com/tether-dev/tether/internal/store/storetest"
)

// storedManifest is the part of a stored manifest the damage tests need.
type storedManifest struct {
	Base *struct {
		ID string `json:"id"`
	} `json:"base"`
	Changed []struct {
		Path   string `json:"path"`
		Chunks []struct {
			ID string `json:"id"`
		} `json:"chunks"`
	} `json:"changed"`
}

// readStored decodes an object as the store holds it: one encoding byte
// (0 raw, 1 zstd), then the payload.
func readStored(t *testing.T, st store.Store, key string) []byte {
	t.Helper()
	obj, err := st.Get(context.Background(), key)
	must(t, err)
	if len(obj) == 0 {
		t.Fatalf("%s is empty", key)
	}
	if obj[0] == 0 {
		return obj[1:]
	}
	dec, err := zstd.NewReader(nil)
	must(t, err)
	defer dec.Close()
	data, err := dec.DecodeAll(obj[1:], nil)
	must(t, err)
	return data
}

func manifestOf(t *testing.T, repo *snapshot.Repo, id string) storedManifest {
	t.Helper()
	var m storedManifest
	must(t, json.Unmarshal(readStored(t, repo.Store(), manifestKey(repo, id)), &m))
	return m
}

func manifestKey(repo *snapshot.Repo, id string) string {
	return repo.Namespace + "/" + repo.Session + "/snapshots/" + id
}

func objectKey(repo *snapshot.Repo, id string) string {
	return repo.Namespace + "/" + repo.Session + "/objects/" + id[:2] + "/" + id
}

// healFixture is a session with three snapshots: 1 (its own base object),
// 2 (a new base object, B2, after many new files) and 3 (a delta against
// B2 that adds new3.bin). files holds each snapshot's files.
type healFixture struct {
	repo     *snapshot.Repo
	ws       string
	cacheDir string
	files    []map[string][]byte // index: snapshot number
	base2    string              // id of B2
	chunk3   string              // the chunk of new3.bin, used by snapshot 3 only
}

func writeWS(t *testing.T, ws string, files map[string][]byte) {
	t.Helper()
	for p, b := range files {
		full := filepath.Join(ws, filepath.FromSlash(p))
		must(t, os.MkdirAll(filepath.Dir(full), 0o755))
		if old, err := os.ReadFile(full); err == nil && bytes.Equal(old, b) {
			continue // unchanged files keep their stat, as in a live workspace
		}
		must(t, os.WriteFile(full, b, 0o644))
		old := time.Now().Add(-time.Hour) // trusted by the stat cache
		must(t, os.Chtimes(full, old, old))
	}
}

func copyFiles(m map[string][]byte) map[string][]byte {
	c := make(map[string][]byte, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func newHealFixture(t *testing.T, url, session string) *healFixture {
	t.Helper()
	ctx := context.Background()
	f := &healFixture{repo: openRepo(t, url, session), ws: t.TempDir(), cacheDir: t.TempDir(), files: []map[string][]byte{nil}}
	rng := rand.New(rand.NewSource(7))
	random := func(n int) []byte { b := make([]byte, n); rng.Read(b); return b }
	files := map[string][]byte{"notes.txt": []byte("day one\n"), "keep.bin": random(200 << 10)}
	saver, err := snapshot.NewSaver(f.repo, f.ws, snapshot.SaveOptions{CacheDir: f.cacheDir})
	must(t, err)
	defer saver.Close()
	step := func() {
		writeWS(t, f.ws, files)
		_, err := saver.Save(ctx)
		must(t, err)
		f.files = append(f.files, copyFiles(files))
	}
	step()
	for i := 0; i < 60; i++ {
		files[fmt.Sprintf("many/file-%02d.txt", i)] = []byte(fmt.Sprintf("file %d\n", i))
	}
	step()
	files["new3.bin"] = random(100 << 10)
	files["notes.txt"] = []byte("day one\nday two\n")
	step()

	m1, m2, m3 := manifestOf(t, f.repo, snapshot.FormatID(1)), manifestOf(t, f.repo, snapshot.FormatID(2)), manifestOf(t, f.repo, snapshot.FormatID(3))
	if m1.Base == nil || m2.Base == nil || m3.Base == nil || m2.Base.ID == m1.Base.ID || m3.Base.ID != m2.Base.ID {
		t.Fatalf("fixture: want snapshots 1 and 2 on their own base objects and 3 a delta on 2's; got %+v %+v %+v", m1.Base, m2.Base, m3.Base)
	}
	f.base2 = m2.Base.ID
	for _, e := range m3.Changed {
		if e.Path == "new3.bin" && len(e.Chunks) == 1 {
			f.chunk3 = e.Chunks[0].ID
		}
	}
	if f.chunk3 == "" {
		t.Fatalf("fixture: snapshot 3 does not add new3.bin as one chunk: %+v", m3.Changed)
	}
	return f
}

// damage is one way a store loses or spoils an object.
type damage struct {
	name string
	// apply damages the fixture's store and returns the key it damaged.
	apply func(t *testing.T, f *healFixture) string
	// bad are the snapshots the damage makes unrestorable; hydrate restores
	// the newest of the others.
	bad []int
	// healed: the next save makes the bad snapshots whole again (it uploads
	// the very chunk that was missing).
	healed bool
}

var damages = []damage{
	{"corrupt-manifest", func(t *testing.T, f *healFixture) string {
		// A torn write: half the object.
		key := manifestKey(f.repo, snapshot.FormatID(3))
		obj, err := f.repo.Store().Get(context.Background(), key)
		must(t, err)
		must(t, f.repo.Store().Put(context.Background(), key, obj[:len(obj)/2]))
		return key
	}, []int{3}, false},
	{"corrupt-base", func(t *testing.T, f *healFixture) string {
		// Bit rot: the same size, one byte different.
		key := objectKey(f.repo, f.base2)
		obj, err := f.repo.Store().Get(context.Background(), key)
		must(t, err)
		obj[len(obj)/2] ^= 0xff
		must(t, f.repo.Store().Put(context.Background(), key, obj))
		return key
	}, []int{3, 2}, false},
	{"missing-base", func(t *testing.T, f *healFixture) string {
		key := objectKey(f.repo, f.base2)
		must(t, f.repo.Store().Delete(context.Background(), key))
		return key
	}, []int{3, 2}, false},
	{"missing-chunk", func(t *testing.T, f *healFixture) string {
		key := objectKey(f.repo, f.chunk3)
		must(t, f.repo.Store().Delete(context.Background(), key))
		return key
	}, []int{3}, true},
}

// assertFiles checks that dir holds exactly want (tether's own .tether
// directory aside) and no leftover of a restore.
func assertFiles(t *testing.T, dir string, want map[string][]byte) {
	t.Helper()
	got := map[string][]byte{}
	must(t, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == ".tether" {
			return filepath.SkipDir
		}
		if rel == ".tether-restore" {
			t.Errorf("%s holds a restore's staging directory", dir)
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			got[rel] = b
			return err
		}
		return nil
	}))
	var diff []string
	for p, b := range want {
		if !bytes.Equal(got[p], b) {
			diff = append(diff, "differs or missing: "+p)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			diff = append(diff, "unexpected: "+p)
		}
	}
	sort.Strings(diff)
	if len(diff) > 0 {
		t.Fatalf("%s: %s", dir, strings.Join(diff, "; "))
	}
}

func problemsOf(t *testing.T, repo *snapshot.Repo) map[string]string {
	t.Helper()
	list, err := snapshot.List(context.Background(), repo)
	must(t, err)
	out := map[string]string{}
	for _, s := range list {
		out[s.ID] = s.Problem
	}
	return out
}

// TestStoreHeals: for each kind of damage to the newest snapshots (a torn
// manifest, a bit-rotten base object, a lost base object, a lost chunk), on
// every backend: ls lists every snapshot and marks the damaged ones; hydrate
// restores the newest snapshot that is whole, says which it skipped and why
// (result, hydrate.json), and leaves nothing of the failed attempts; the next
// save (a new process with the warm stat cache of the old one) succeeds and
// its snapshot verifies; then hydrate restores that one.
func TestStoreHeals(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			for i, d := range damages {
				t.Run(d.name, func(t *testing.T) {
					ctx := context.Background()
					f := newHealFixture(t, b.URL, fmt.Sprintf("heal-%d", i))
					key := d.apply(t, f)
					isBad := map[string]bool{}
					for _, n := range d.bad {
						isBad[snapshot.FormatID(uint64(n))] = true
					}

					// ls: every snapshot listed, the damaged ones marked with the object.
					probs := problemsOf(t, f.repo)
					if len(probs) != 3 {
						t.Fatalf("ls lists %d snapshots, want 3: %v", len(probs), probs)
					}
					for id, p := range probs {
						if isBad[id] != (p != "") || (p != "" && !strings.Contains(p, key)) {
							t.Fatalf("ls: snapshot %s problem %q; want damaged=%v naming %s", id, p, isBad[id], key)
						}
					}

					// hydrate: the newest whole snapshot, loudly.
					good := snapshot.FormatID(uint64(d.bad[len(d.bad)-1] - 1))
					target := filepath.Join(t.TempDir(), "ws")
					var progress bytes.Buffer
					res, err := Hydrate(ctx, f.repo, target, nil, &progress)
					if err != nil {
						t.Fatalf("hydrate: %v\n%s", err, progress.String())
					}
					if res.Outcome != OutcomeRestoredOlder || res.Snapshot != good || len(res.Skipped) != len(d.bad) {
						t.Fatalf("hydrate: %+v; want %s of snapshot %s skipping %v", res, OutcomeRestoredOlder, good, d.bad)
					}
					for j, n := range d.bad {
						s := res.Skipped[j]
						if s.ID != snapshot.FormatID(uint64(n)) || !strings.Contains(s.Reason, key) {
							t.Fatalf("hydrate skipped[%d] = %+v; want snapshot %d, reason naming %s", j, s, n, key)
						}
						if !strings.Contains(progress.String(), "skipping snapshot "+s.ID) {
							t.Fatalf("hydrate did not say it skipped %s:\n%s", s.ID, progress.String())
						}
					}
					file := readHydrateFile(t, target)
					if file.Outcome != OutcomeRestoredOlder || len(file.Skipped) != len(d.bad) || file.Skipped[0].Reason != res.Skipped[0].Reason {
						t.Fatalf("hydrate.json = %+v", file)
					}
					raw, err := os.ReadFile(filepath.Join(target, HydrateFile))
					must(t, err)
					if !strings.Contains(string(raw), `"skipped"`) || !strings.Contains(string(raw), `"reason"`) {
						t.Fatalf("hydrate.json lacks the skipped list in camelCase: %s", raw)
					}
					n := d.bad[len(d.bad)-1] - 1
					assertFiles(t, target, f.files[n])

					// The next save: a new process, the old one's stat cache.
					// It takes its writer epoch as a standalone sync does: hydrate
					// above took one, so a Saver without one would be fenced off.
					saver, err := snapshot.NewSaver(f.repo, f.ws, snapshot.SaveOptions{
						CacheDir: f.cacheDir,
						Writer:   writerSource(f.repo, f.ws, quietLog(t)),
					})
					must(t, err)
					defer saver.Close()
					st, err := saver.Save(ctx)
					if err != nil {
						t.Fatalf("save after %s: %v", d.name, err)
					}
					if st.ID != snapshot.FormatID(4) || len(st.Warnings) == 0 {
						t.Fatalf("save after %s: %+v; want snapshot 4 with a warning", d.name, st)
					}
					t.Logf("save after %s: %d bytes uploaded; warning: %s", d.name, st.BytesUploaded, st.Warnings[0])
					rep, err := snapshot.Verify(ctx, f.repo, snapshot.VerifyOptions{Snapshot: st.ID})
					must(t, err)
					if len(rep.Problems) > 0 {
						t.Fatalf("snapshot %s saved after %s does not verify: %v", st.ID, d.name, rep.Problems)
					}
					probs = problemsOf(t, f.repo)
					for id, p := range probs {
						if want := isBad[id] && !d.healed; want != (p != "") {
							t.Fatalf("ls after the save: snapshot %s problem %q, want damaged=%v", id, p, want)
						}
					}
					// And a save after that builds on snapshot 4 as usual.
					f.files[3]["notes.txt"] = []byte("day one\nday two\nday three\n")
					writeWS(t, f.ws, f.files[3])
					st5, err := saver.Save(ctx)
					must(t, err)
					if len(st5.Warnings) != 0 {
						t.Fatalf("the save after the healing one warns again: %v", st5.Warnings)
					}

					target2 := filepath.Join(t.TempDir(), "ws")
					res, err = Hydrate(ctx, f.repo, target2, nil, nil)
					must(t, err)
					if res.Outcome != OutcomeRestored || res.Snapshot != st5.ID || len(res.Skipped) != 0 {
						t.Fatalf("hydrate after the healing saves: %+v", res)
					}
					assertFiles(t, target2, f.files[3])
				})
			}
		})
	}
}

// TestHydrateDoesNotFallBackOnStoreFailure: when the newest snapshot cannot
// be restored because the store fails (not because its data is damaged),
// hydrate fails as before: an older snapshot would throw away work that is
// fine and readable a minute later.
func TestHydrateDoesNotFallBackOnStoreFailure(t *testing.T) {
	ctx := context.Background()
	f := newHealFixture(t, storetest.FileURL(t.TempDir()), "down")
	inj := storefault.New(f.repo.Store(), 1)
	inj.Add(storefault.Rule{Op: storefault.Get, KeyPrefix: objectKey(f.repo, f.chunk3), Fault: storefault.Fail})
	repo, err := snapshot.OpenRepo(inj, "default", "down")
	must(t, err)
	target := filepath.Join(t.TempDir(), "ws")
	var progress bytes.Buffer
	_, err = Hydrate(ctx, repo, target, nil, &progress)
	if err == nil || !strings.Contains(err.Error(), "must not start empty") || inj.Hits() == 0 {
		t.Fatalf("hydrate with the store failing: %v (%d faults)\n%s", err, inj.Hits(), progress.String())
	}
	if strings.Contains(progress.String(), "skipping") {
		t.Fatalf("hydrate fell back on a store failure:\n%s", progress.String())
	}
	if _, err := os.Stat(filepath.Join(target, HydrateFile)); !os.IsNotExist(err) {
		t.Fatal("a failed hydrate wrote hydrate.json")
	}
	if names, _ := os.ReadDir(target); len(names) != 0 {
		t.Fatalf("a failed hydrate left %v in the workspace", names)
	}
}

// TestHydrateFinishesInterruptedFallback: a hydrate that fell back to an
// older snapshot and was killed while moving it into place is finished by
// the next hydrate, which reports the newer snapshots as skipped instead of
// failing for ever on the other snapshot's staging directory.
func TestHydrateFinishesInterruptedFallback(t *testing.T) {
	ctx := context.Background()
	f := newHealFixture(t, storetest.FileURL(t.TempDir()), "interrupted")
	damages[3].apply(t, f) // snapshot 3 incomplete, its manifest readable
	// What a kill after the staging was complete leaves: the verified tree
	// of snapshot 2 and its completion marker, nothing moved yet.
	target := filepath.Join(t.TempDir(), "ws")
	built := filepath.Join(t.TempDir(), "built")
	_, err := snapshot.Restore(ctx, f.repo, built, snapshot.RestoreOptions{Snapshot: snapshot.FormatID(2)})
	must(t, err)
	must(t, os.MkdirAll(filepath.Join(target, ".tether-restore"), 0o700))
	must(t, os.Rename(built, filepath.Join(target, ".tether-restore", "tree")))
	must(t, os.WriteFile(filepath.Join(target, ".tether-restore", "complete"), []byte(snapshot.FormatID(2)), 0o600))

	res, err := Hydrate(ctx, f.repo, target, nil, nil)
	must(t, err)
	if res.Outcome != OutcomeRestoredOlder || res.Snapshot != snapshot.FormatID(2) || len(res.Skipped) != 1 || res.Skipped[0].ID != snapshot.FormatID(3) {
		t.Fatalf("hydrate over an interrupted fallback: %+v", res)
	}
	assertFiles(t, target, f.files[2])
}
