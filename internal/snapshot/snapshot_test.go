package snapshot

import (
	"context"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tether-dev/tether/internal/store"
)

func TestRoundTrip(t *testing.T) {
	eachBackend(t, func(t *testing.T, url string) {
		repo := openRepo(t, url)
		ws := filepath.Join(t.TempDir(), "ws")
		makeWorkspace(t, ws)
		st := save(t, repo, ws, SaveOptions{})
		if st.ID != FormatID(1) || st.Files != 8 || st.Symlinks != 3 {
			t.Fatalf("unexpected save stats %+v", st)
		}
		out := filepath.Join(t.TempDir(), "restored")
		rs, err := Restore(context.Background(), repo, out, RestoreOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if rs.ID != st.ID || rs.Bytes != st.BytesScanned {
			t.Fatalf("restore stats %+v do not match save %+v", rs, st)
		}
		assertSameTree(t, ws, out)
		if _, err := os.Stat(filepath.Join(out, stagingName)); !os.IsNotExist(err) {
			t.Fatalf("staging directory left behind: %v", err)
		}
		rep, err := Verify(context.Background(), repo, VerifyOptions{})
		if err != nil || len(rep.Problems) > 0 {
			t.Fatalf("verify: %v %v", err, rep)
		}
	})
}

func TestIncremental(t *testing.T) {
	eachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		repo := openRepo(t, url)
		ws := filepath.Join(t.TempDir(), "ws")
		makeWorkspace(t, ws)
		cache := t.TempDir()
		saver, err := NewSaver(repo, ws, SaveOptions{CacheDir: cache})
		must(t, err)
		first, err := saver.Save(ctx)
		must(t, err)

		// No change: nothing read, no chunk uploaded (the one object is the manifest).
		again, err := saver.Save(ctx)
		must(t, err)
		if again.BytesRead != 0 || again.ObjectsUploaded != 1 || again.CacheHits != first.Files {
			t.Fatalf("save without change read %d bytes, uploaded %d objects, %d cache hits of %d files", again.BytesRead, again.ObjectsUploaded, again.CacheHits, first.Files)
		}
		// The same from a new process: the stat cache is on disk.
		fresh := save(t, repo, ws, SaveOptions{CacheDir: cache})
		if fresh.BytesRead != 0 || fresh.ObjectsUploaded != 1 {
			t.Fatalf("new saver without change read %d bytes and uploaded %d objects", fresh.BytesRead, fresh.ObjectsUploaded)
		}

		// Append 1 KiB to the 20 MiB transcript.
		tr := filepath.Join(ws, ".claude/projects/-workspace/6f1c.jsonl")
		f, err := os.OpenFile(tr, os.O_APPEND|os.O_WRONLY, 0)
		must(t, err)
		_, err = f.Write(jsonl(rand.New(rand.NewSource(2)), 1024))
		must(t, err)
		must(t, f.Close())
		app, err := saver.Save(ctx)
		must(t, err)
		if app.BytesUploaded >= 1<<20 {
			t.Fatalf("append of 1 KiB uploaded %d bytes", app.BytesUploaded)
		}
		t.Logf("1 KiB append: uploaded %d bytes in %d objects, read %d bytes", app.BytesUploaded, app.ObjectsUploaded, app.BytesRead)

		out := filepath.Join(t.TempDir(), "out")
		_, err = Restore(ctx, repo, out, RestoreOptions{})
		must(t, err)
		assertSameTree(t, ws, out)
	})
}

// TestManyAppends: a transcript growing by small appends, saved after each,
// costs about what was appended, and does not end in a long run of tiny chunks.
func TestManyAppends(t *testing.T) {
	ctx := context.Background()
	repo := openRepo(t, "file://"+t.TempDir())
	ws := t.TempDir()
	rng := rand.New(rand.NewSource(3))
	tr := filepath.Join(ws, "t.jsonl")
	writeFile(t, tr, jsonl(rng, 3<<20), 0o600)
	saver, err := NewSaver(repo, ws, SaveOptions{})
	must(t, err)
	_, err = saver.Save(ctx)
	must(t, err)
	var chunkBytes int64
	const appends, size = 300, 1024
	for i := 0; i < appends; i++ {
		f, err := os.OpenFile(tr, os.O_APPEND|os.O_WRONLY, 0)
		must(t, err)
		_, err = f.Write(jsonl(rng, size))
		must(t, err)
		must(t, f.Close())
		st, err := saver.Save(ctx)
		must(t, err)
		obj, err := repo.st.Stat(ctx, repo.manifestKey(st.ID))
		must(t, err)
		chunkBytes += st.BytesUploaded - obj.Size
	}
	perAppend := float64(chunkBytes) / appends
	t.Logf("%d appends of %d bytes: %.0f chunk bytes uploaded per append, %d chunks at the end", appends, size, perAppend, len(saver.base.Entries[0].Chunks))
	if perAppend > 12*size {
		t.Fatalf("each 1 KiB append uploaded %.0f bytes of chunks on average", perAppend)
	}
	if n := len(saver.base.Entries[0].Chunks); n > 40 {
		t.Fatalf("file ended in %d chunks", n)
	}
	out := filepath.Join(t.TempDir(), "out")
	_, err = Restore(ctx, repo, out, RestoreOptions{})
	must(t, err)
	assertSameTree(t, ws, out)
}

// TestRewriteLonger: a file that grew but was not appended to (an agent
// rewrote it longer) must not be taken for an append.
func TestRewriteLonger(t *testing.T) {
	ctx := context.Background()
	repo := openRepo(t, "file://"+t.TempDir())
	ws := t.TempDir()
	p := filepath.Join(ws, "main.go")
	writeFile(t, p, []byte("package main\n\nfunc main() {}\n"), 0o644)
	saver, err := NewSaver(repo, ws, SaveOptions{})
	must(t, err)
	_, err = saver.Save(ctx)
	must(t, err)
	writeFile(t, p, []byte("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println() }\n"), 0o644)
	_, err = saver.Save(ctx)
	must(t, err)
	out := filepath.Join(t.TempDir(), "out")
	_, err = Restore(ctx, repo, out, RestoreOptions{})
	must(t, err)
	assertSameTree(t, ws, out)
}

func TestRestoreChoosesSnapshot(t *testing.T) {
	ctx := context.Background()
	repo := openRepo(t, "file://"+t.TempDir())
	ws := t.TempDir()
	writeFile(t, filepath.Join(ws, "f"), []byte("one"), 0o644)
	save(t, repo, ws, SaveOptions{})
	v1 := filepath.Join(t.TempDir(), "v1")
	_, err := Restore(ctx, repo, v1, RestoreOptions{})
	must(t, err)
	writeFile(t, filepath.Join(ws, "f"), []byte("two"), 0o644)
	save(t, repo, ws, SaveOptions{})

	out := filepath.Join(t.TempDir(), "out")
	rs, err := Restore(ctx, repo, out, RestoreOptions{Snapshot: "1"})
	must(t, err)
	if rs.ID != FormatID(1) {
		t.Fatalf("restored %s", rs.ID)
	}
	assertSameTree(t, v1, out)

	_, err = Restore(ctx, repo, filepath.Join(t.TempDir(), "x"), RestoreOptions{Snapshot: "7"})
	if err == nil || !strings.Contains(err.Error(), "snapshot 7 does not exist") {
		t.Fatalf("unknown snapshot id: %v", err)
	}
	_, err = Restore(ctx, repo, filepath.Join(t.TempDir(), "x"), RestoreOptions{Snapshot: "seven"})
	if err == nil || !strings.Contains(err.Error(), "not valid") {
		t.Fatalf("bad snapshot id: %v", err)
	}
	// A non-empty target is refused and left alone.
	err = func() error { _, err := Restore(ctx, repo, ws, RestoreOptions{}); return err }()
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore over a non-empty dir: %v", err)
	}
}

// racingStore lets another writer win the race for every manifest name.
type racingStore struct {
	store.Store
}

func (r racingStore) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	if strings.Contains(key, "/snapshots/") {
		if err := r.Store.PutIfAbsent(ctx, key, data); err != nil {
			return err
		}
	}
	return r.Store.PutIfAbsent(ctx, key, data)
}

func TestConcurrentWriterCannotOverwrite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ws := t.TempDir()
	writeFile(t, filepath.Join(ws, "f"), []byte("x"), 0o644)
	plain := openRepo(t, "file://"+dir)
	save(t, plain, ws, SaveOptions{})
	before, err := plain.st.Get(ctx, plain.manifestKey(FormatID(1)))
	must(t, err)

	racing, err := OpenRepo(racingStore{plain.st}, "default", "s1")
	must(t, err)
	s, err := NewSaver(racing, ws, SaveOptions{})
	must(t, err)
	_, err = s.Save(ctx)
	if !errors.Is(err, ErrConcurrentSave) {
		t.Fatalf("save that lost the race: %v, want ErrConcurrentSave", err)
	}
	after, err := plain.st.Get(ctx, plain.manifestKey(FormatID(1)))
	must(t, err)
	if string(before) != string(after) {
		t.Fatal("snapshot 1 was overwritten")
	}
	// The saver recovers: its next save builds on the newest snapshot.
	st, err := NewSaver(plain, ws, SaveOptions{})
	must(t, err)
	got, err := st.Save(ctx)
	must(t, err)
	if got.ID != FormatID(3) {
		t.Fatalf("next save wrote %s, want %s", got.ID, FormatID(3))
	}
}

func TestSizeCap(t *testing.T) {
	ctx := context.Background()
	repo := openRepo(t, "file://"+t.TempDir())
	ws := t.TempDir()
	rng := newRand(11)
	writeFile(t, filepath.Join(ws, ".claude/projects/p/t.jsonl"), jsonl(rng, 3<<20), 0o600)
	writeFile(t, filepath.Join(ws, "big/a.bin"), randBytes(rng, 5<<20), 0o644)
	writeFile(t, filepath.Join(ws, "b.bin"), randBytes(rng, 2<<20), 0o644)
	writeFile(t, filepath.Join(ws, "c.txt"), []byte("small"), 0o644)
	s, err := NewSaver(repo, ws, SaveOptions{MaxBytes: 6 << 20})
	must(t, err)
	st, err := s.Save(ctx)
	must(t, err)
	if len(st.LeftOut) != 1 || st.LeftOut[0].Path != "big/a.bin" || st.LeftOutBytes != 5<<20 {
		t.Fatalf("left out %+v (%d bytes), want big/a.bin only", st.LeftOut, st.LeftOutBytes)
	}
	m, err := repo.LoadManifest(ctx, st.ID)
	must(t, err)
	var paths []string
	for _, e := range m.Entries {
		paths = append(paths, e.Path)
	}
	got := strings.Join(paths, ",")
	if strings.Contains(got, "big/a.bin") || !strings.Contains(got, "b.bin") || !strings.Contains(got, ".claude/projects/p/t.jsonl") || !strings.Contains(got, "big") {
		t.Fatalf("snapshot holds %s", got)
	}
	// The agent's own state is never left out, even when it alone is over the cap.
	s2, err := NewSaver(repo, ws, SaveOptions{MaxBytes: 1 << 20})
	must(t, err)
	st, err = s2.Save(ctx)
	must(t, err)
	for _, f := range st.LeftOut {
		if strings.HasPrefix(f.Path, ".claude/") {
			t.Fatalf("the transcript was left out: %+v", st.LeftOut)
		}
	}
}
