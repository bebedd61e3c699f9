package snapshot

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/tether-dev/tether/internal/gitstate"
)

// allocated returns how many bytes fn allocated on the heap.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestBombRefusedBeforeInflating: a chunk, a base object or a manifest
// replaced by a bomb is refused as corrupt, naming the object, having
// allocated no more than the length the manifest gives it (for a manifest,
// its own limit), whether or not the bomb declares its size.
func TestBombRefusedBeforeInflating(t *testing.T) {
	ctx := context.Background()
	repo := openRepo(t, "file://"+t.TempDir())
	ws := t.TempDir()
	content := randBytes(newRand(5), 200<<10)
	writeFile(t, filepath.Join(ws, "f.bin"), content, 0o644)
	// Enough entries for a base object larger than the bomb: it is read
	// and decompressed, not refused for its stored size.
	for i := range 600 {
		writeFile(t, filepath.Join(ws, "notes", fmt.Sprintf("note-%04d.txt", i)), []byte{byte(i)}, 0o644)
	}
	save(t, repo, ws, SaveOptions{})
	m, err := repo.LoadManifest(ctx, FormatID(1))
	must(t, err)
	if m.Base.Len <= int64(len(zstdBomb(t, false))) {
		t.Fatalf("base object of %d bytes, want more than the bomb's %d", m.Base.Len, len(zstdBomb(t, false)))
	}
	chunk := Ref{ID: hashID(content), Len: int64(len(content))}
	for _, declared := range []bool{false, true} {
		bomb := zstdBomb(t, declared)
		t.Run(fmt.Sprintf("declared=%v", declared), func(t *testing.T) {
			cases := []struct {
				name  string
				key   string
				limit uint64 // what refusing it may allocate
				read  func() error
			}{
				{"chunk", repo.objectKey(chunk.ID), 4 * uint64(chunk.Len), func() error {
					_, err := repo.readChunk(ctx, chunk, "")
					return err
				}},
				{"base", repo.objectKey(m.Base.ID), 4 * uint64(m.Base.Len), func() error {
					repo.lastBase = nil
					_, err := repo.LoadManifest(ctx, m.ID)
					return err
				}},
				{"manifest", repo.manifestKey(m.ID), 3 * maxManifestLen, func() error {
					_, err := repo.LoadManifest(ctx, m.ID)
					return err
				}},
			}
			for _, tc := range cases {
				good, err := repo.st.Get(ctx, tc.key)
				must(t, err)
				must(t, repo.st.Put(ctx, tc.key, bomb))
				var rerr error
				n := allocated(func() { rerr = tc.read() })
				must(t, repo.st.Put(ctx, tc.key, good))
				var ce *CorruptError
				if !errors.As(rerr, &ce) || ce.Key != tc.key || !strings.Contains(rerr.Error(), tc.key) {
					t.Errorf("%s bomb: %v, want a CorruptError naming %s", tc.name, rerr, tc.key)
				}
				t.Logf("%s bomb: allocated %d KiB; %v", tc.name, n>>10, rerr)
				if n > tc.limit {
					t.Errorf("%s bomb: refusing it allocated %d KiB, want at most %d KiB", tc.name, n>>10, tc.limit>>10)
				}
			}
		})
	}
	// Restored, everything reads again.
	repo.lastBase = nil
	_, err = Restore(ctx, repo, filepath.Join(t.TempDir(), "out"), RestoreOptions{})
	must(t, err)
}

// TestOversizedObjectRefusedUnread: an object far larger than its content
// can need (the store's own size, before any decompression) is refused as
// corrupt without being read into memory.
func TestOversizedObjectRefusedUnread(t *testing.T) {
	eachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		repo := openRepo(t, url)
		ws := t.TempDir()
		content := []byte("a small file\n")
		writeFile(t, filepath.Join(ws, "f.txt"), content, 0o644)
		save(t, repo, ws, SaveOptions{})
		key := repo.objectKey(hashID(content))
		huge := make([]byte, 64<<20)
		must(t, repo.st.Put(ctx, key, huge))
		huge = nil
		var rerr error
		n := allocated(func() { _, rerr = repo.readChunk(ctx, Ref{ID: hashID(content), Len: int64(len(content))}, "") })
		var ce *CorruptError
		if !errors.As(rerr, &ce) || ce.Key != key || !strings.Contains(rerr.Error(), "larger object") {
			t.Fatalf("oversized object: %v, want a CorruptError naming %s", rerr, key)
		}
		t.Logf("allocated %d KiB; %v", n>>10, rerr)
		if strings.HasPrefix(url, "file://") && n > 1<<20 {
			t.Errorf("refusing a 64 MiB object allocated %d KiB", n>>10)
		}
		_, err := Restore(ctx, repo, filepath.Join(t.TempDir(), "out"), RestoreOptions{})
		if !errors.As(err, &ce) || ce.Key != key {
			t.Fatalf("restore with an oversized object: %v, want a CorruptError naming %s", err, key)
		}
	})
}

// TestValidateRefusesBadSizes: sizes and chunk lengths that are negative,
// beyond the chunk size limit, overflowing when added, or that disagree with
// the size they should add up to are refused before anything is written.
func TestValidateRefusesBadSizes(t *testing.T) {
	id := func(n int) string { return fmt.Sprintf("%064x", n) }
	refs := func(lens ...int64) []Ref {
		var rs []Ref
		for i, l := range lens {
			rs = append(rs, Ref{ID: id(i + 1), Len: l})
		}
		return rs
	}
	cases := []struct {
		name   string
		size   int64
		chunks []Ref
		want   string
	}{
		{"negative-size", -1, nil, "negative size"},
		{"negative-size-negative-chunk", -5, refs(-5), "negative size"},
		{"zero-length-chunk", 0, refs(0), "outside 1..4194304"},
		{"negative-chunk", 10, refs(5, -5, 10), "outside 1..4194304"},
		{"chunk-over-limit", maxChunk + 1, refs(maxChunk + 1), "outside 1..4194304"},
		// Added up in int64 these wrap around to the size: 2^64 ≡ 0.
		{"overflow-to-zero", 0, refs(math.MaxInt64, math.MaxInt64, 2), "outside 1..4194304"},
		{"overflow-to-size", 100, refs(math.MaxInt64, math.MaxInt64, 102), "outside 1..4194304"},
		{"chunks-exceed-size", 100, refs(60, 50), "first 2 chunks already hold more"},
		{"chunks-short-of-size", 100, refs(60), "chunks hold 60 bytes"},
		{"size-without-chunks", 1 << 40, nil, "chunks hold 0 bytes"},
		{"size-over-bound", maxFileSize + 1, refs(maxChunk), "maxFileSize"},
		{"size-max-int64", math.MaxInt64, refs(math.MaxInt64), "maxFileSize"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := validChunks(tc.chunks, tc.size); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validChunks(%v, %d) = %v, want an error saying %q", tc.chunks, tc.size, err, tc.want)
			}
			// As a file and as a bundle, restore refuses the manifest
			// before it writes anything.
			repo := openRepo(t, "file://"+t.TempDir())
			m := &Manifest{Version: 1, ID: FormatID(1), Namespace: repo.Namespace, Session: repo.Session,
				Entries: []Entry{{Path: "f", Type: TypeFile, Mode: 0o644, Size: tc.size, Chunks: tc.chunks}}}
			if err := m.validate(); err == nil || !strings.Contains(err.Error(), `file "f"`) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validate of a file: %v, want it to name the file and say %q", err, tc.want)
			}
			restoreRefuses(t, repo, m, tc.want)

			b := &Manifest{ID: "b", Entries: []Entry{{Path: "repos", Type: TypeDir, Mode: 0o755}},
				Repos: []RepoEntry{{Path: "repos/app", State: &gitstate.State{}, Bundles: []Blob{{Size: tc.size, Chunks: tc.chunks}}}}}
			if err := b.validate(); err == nil || !strings.Contains(err.Error(), `bundle 0 of repository "repos/app"`) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validate of a bundle: %v, want it to name the bundle and say %q", err, tc.want)
			}
		})
	}
	// The largest legitimate lengths pass.
	if err := validChunks(refs(maxChunk, maxChunk, 1), 2*maxChunk+1); err != nil {
		t.Fatal(err)
	}
}

// TestValidateRefusesDisagreeingChunkLengths: two references to one chunk
// that give it different lengths, each adding up to its own entry's size,
// are refused before anything is written, naming the second entry, whether
// both are files or one is a bundle.
func TestValidateRefusesDisagreeingChunkLengths(t *testing.T) {
	id := fmt.Sprintf("%064x", 7)
	file := func(p string, n int64) Entry {
		return Entry{Path: p, Type: TypeFile, Mode: 0o644, Size: n, Chunks: []Ref{{ID: id, Len: n}}}
	}
	cases := []struct {
		name string
		m    *Manifest
		want string
	}{
		{"two-files", &Manifest{Version: 1, ID: FormatID(1), Entries: []Entry{file("a", 10), file("b", 20)}}, `file "b" gives chunk ` + id + " a length of 20 bytes, another entry gives it 10"},
		{"file-and-bundle", &Manifest{Version: 1, ID: FormatID(1), Entries: []Entry{file("a", 10), {Path: "repos", Type: TypeDir, Mode: 0o755}},
			Repos: []RepoEntry{{Path: "repos/app", State: &gitstate.State{}, Bundles: []Blob{{Size: 30, Chunks: []Ref{{ID: id, Len: 30}}}}}}},
			`bundle 0 of repository "repos/app" gives chunk ` + id + " a length of 30 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.m.validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validate: %v, want an error saying %q", err, tc.want)
			}
			repo := openRepo(t, "file://"+t.TempDir())
			tc.m.Namespace, tc.m.Session = repo.Namespace, repo.Session
			raw, err := marshalManifest(tc.m)
			must(t, err)
			must(t, repo.st.PutIfAbsent(context.Background(), repo.manifestKey(tc.m.ID), encode(raw)))
			out := filepath.Join(t.TempDir(), "out")
			if _, err := Restore(context.Background(), repo, out, RestoreOptions{}); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("restore: %v, want it to say %q", err, tc.want)
			}
			assertEmpty(t, out)
		})
	}
	// The same chunk at the same length in several entries is ordinary
	// (two copies of a file).
	m := &Manifest{ID: FormatID(1), Entries: []Entry{file("a", 10), file("b", 10)}}
	must(t, m.validate())
}

// TestBaseLengthIsBounded: a manifest naming a base object longer than
// maxBaseLen (or of no length) is refused before the base is read.
func TestBaseLengthIsBounded(t *testing.T) {
	ctx := context.Background()
	repo := openRepo(t, "file://"+t.TempDir())
	for i, l := range []int64{maxBaseLen + 1, math.MaxInt64, 0, -1} {
		m := &Manifest{Version: 2, ID: FormatID(uint64(i + 1)), Namespace: repo.Namespace, Session: repo.Session, Base: &Ref{ID: fmt.Sprintf("%064x", i+1), Len: l}}
		raw, err := marshalManifest(m)
		must(t, err)
		must(t, repo.st.PutIfAbsent(ctx, repo.manifestKey(m.ID), encode(raw)))
		_, err = repo.LoadManifest(ctx, m.ID)
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.Key != repo.manifestKey(m.ID) || !strings.Contains(err.Error(), "maxBaseLen") {
			t.Fatalf("manifest naming a base of %d bytes: %v, want a CorruptError naming its manifest and maxBaseLen", l, err)
		}
	}
}
