package snapshot

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// makeSparse creates the file p of size bytes that holds data only at the
// given offsets, holes everywhere else (the end included, unless data ends
// there), and skips the test when the file system gives it all its blocks
// (it keeps no holes).
func makeSparse(t testing.TB, p string, size int64, data map[int64][]byte) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	must(t, err)
	defer f.Close()
	must(t, f.Truncate(size))
	var written int64
	for off, b := range data {
		_, err := f.WriteAt(b, off)
		must(t, err)
		written += int64(len(b))
	}
	must(t, f.Sync())
	if got := allocatedOf(t, p); got > written+int64(len(data))*2*64<<10 {
		t.Skipf("the file system of %s keeps no holes: %d bytes of data took %d bytes", p, written, got)
	}
}

// allocatedOf is the disk space the file at p takes (st_blocks*512).
func allocatedOf(t testing.TB, p string) int64 {
	t.Helper()
	var st syscall.Stat_t
	must(t, syscall.Stat(p, &st))
	return st.Blocks * 512
}

func entryOf(t *testing.T, m *Manifest, rel string) *Entry {
	t.Helper()
	for i := range m.Entries {
		if m.Entries[i].Path == rel {
			return &m.Entries[i]
		}
	}
	t.Fatalf("snapshot %s has no entry %q", m.ID, rel)
	return nil
}

// TestSparseFileKeepsHoles: a 2 GiB file holding 4 KiB of data, and one
// with data at several offsets (one unaligned) and a hole at its end, are
// saved by reading their data only and restored byte for byte with their
// holes: the restored 2 GiB file takes about 4 KiB of disk. A hard link to
// one comes back as a link; an unchanged sparse file is not read again by
// the next process, a changed one only its data; verify finds the
// snapshots whole. Ordinary files keep the ordinary form.
func TestSparseFileKeepsHoles(t *testing.T) {
	ctx := context.Background()
	repo := openRepo(t, "file://"+t.TempDir())
	ws, cache := t.TempDir(), t.TempDir()
	rng := newRand(4)
	const gib = int64(1) << 30
	disk := filepath.Join(ws, "disk.img")
	makeSparse(t, disk, 2*gib, map[int64][]byte{gib: randBytes(rng, 4096)})
	multi := filepath.Join(ws, "vm/multi.img")
	multiData := map[int64][]byte{
		0:            randBytes(rng, 8192),
		100 << 20:    randBytes(rng, 100<<10),
		300<<20 + 17: randBytes(rng, 5000), // not block aligned
		500 << 20:    randBytes(rng, 4096),
	}
	makeSparse(t, multi, 600<<20, multiData) // a 100 MiB hole at the end
	must(t, os.Link(disk, filepath.Join(ws, "vm/disk-link.img")))
	writeFile(t, filepath.Join(ws, "plain.txt"), randBytes(rng, 300<<10), 0o644)
	// Zeros that were written, not holes: an ordinary file.
	writeFile(t, filepath.Join(ws, "zeros.bin"), make([]byte, 1<<20), 0o644)
	backdate(t, ws)
	var dataBytes int64 = 4096 + 300<<10 + 1<<20
	for _, b := range multiData {
		dataBytes += int64(len(b))
	}

	st := save(t, repo, ws, SaveOptions{CacheDir: cache})
	// The data is read, with the blocks it shares with the holes around
	// it, and none of the holes: 2.6 GiB of file, some 1.5 MiB read.
	if max := dataBytes + 256<<10; st.BytesRead > max {
		t.Errorf("save read %d bytes, want only the data (about %d, at most %d)", st.BytesRead, dataBytes, max)
	}
	if st.BytesUploaded > 2<<20 {
		t.Errorf("save uploaded %d bytes, want about the data's compressed size", st.BytesUploaded)
	}
	m, err := repo.LoadManifest(ctx, st.ID)
	must(t, err)
	if m.Version != 4 {
		t.Errorf("manifest format %d, want 4", m.Version)
	}
	if e := entryOf(t, m, "disk.img"); !e.Sparse || fmt.Sprint(e.Extents) != fmt.Sprint([]Extent{{gib, 4096}}) || e.Size != 2*gib {
		t.Errorf("disk.img: sparse %v, size %d, extents %v; want sparse, 2 GiB, data at 1 GiB only", e.Sparse, e.Size, e.Extents)
	}
	if e := entryOf(t, m, "vm/multi.img"); !e.Sparse || len(e.Extents) != 4 || e.Extents[3].Off+e.Extents[3].Len > 501<<20 {
		t.Errorf("vm/multi.img: sparse %v, extents %v; want four, the last ending well before the end", e.Sparse, e.Extents)
	}
	if e := entryOf(t, m, "vm/disk-link.img"); e.LinkTo != "disk.img" || !e.Sparse {
		t.Errorf("vm/disk-link.img: a link to %q, sparse %v; want a sparse link to disk.img", e.LinkTo, e.Sparse)
	}
	for _, rel := range []string{"plain.txt", "zeros.bin"} {
		if e := entryOf(t, m, rel); e.Sparse || e.Extents != nil {
			t.Errorf("%s: saved as sparse (%v), want the ordinary form", rel, e.Extents)
		}
	}

	check := func(id string) {
		t.Helper()
		out := filepath.Join(t.TempDir(), "out")
		_, err := Restore(ctx, repo, out, RestoreOptions{Snapshot: id})
		must(t, err)
		// The link is the same inode (checked below): hashed once.
		assertSameTreeExcept(t, ws, out, func(rel string) bool { return rel == "vm/disk-link.img" })
		if got := allocatedOf(t, filepath.Join(out, "disk.img")); got > 64<<10 {
			t.Errorf("snapshot %s: disk.img restored with %d bytes allocated, want about 4 KiB", id, got)
		}
		if got, orig := allocatedOf(t, filepath.Join(out, "vm/multi.img")), allocatedOf(t, multi); got > orig+64<<10 {
			t.Errorf("snapshot %s: vm/multi.img restored with %d bytes allocated, the original has %d", id, got, orig)
		}
		ino, nlink := inoOf(t, filepath.Join(out, "disk.img"))
		if ino2, _ := inoOf(t, filepath.Join(out, "vm/disk-link.img")); ino2 != ino || nlink != 2 {
			t.Errorf("snapshot %s: the hard link came back as inode %d, disk.img is %d with %d links", id, ino2, ino, nlink)
		}
		must(t, os.RemoveAll(out))
	}
	check(st.ID)

	// A new process: the unchanged sparse files are not read at all.
	st2 := save(t, repo, ws, SaveOptions{CacheDir: cache})
	if st2.BytesRead != 0 || st2.CacheHits != 4 {
		t.Errorf("unchanged: read %d bytes with %d cache hits, want 0 bytes and 4 hits", st2.BytesRead, st2.CacheHits)
	}
	// Data written at a new offset: only the data is read again.
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteAt(randBytes(rng, 4096), gib/2)
	must(t, err)
	must(t, f.Close())
	old := time.Now().Add(-30 * time.Minute)
	must(t, os.Chtimes(disk, old, old)) // trusted next time, unlike a racy file
	st3 := save(t, repo, ws, SaveOptions{CacheDir: cache})
	if st3.BytesRead > 64<<10 || st3.BytesUploaded > 64<<10 {
		t.Errorf("after a 4 KiB write into the 2 GiB file: read %d bytes, uploaded %d; want about 8 KiB read and 4 KiB uploaded", st3.BytesRead, st3.BytesUploaded)
	}
	m3, err := repo.LoadManifest(ctx, st3.ID)
	must(t, err)
	if e := entryOf(t, m3, "disk.img"); fmt.Sprint(e.Extents) != fmt.Sprint([]Extent{{gib / 2, 4096}, {gib, 4096}}) {
		t.Errorf("disk.img after the write: extents %v", e.Extents)
	}
	check(st3.ID)
	rep, err := Verify(ctx, repo, VerifyOptions{})
	must(t, err)
	if len(rep.Problems) > 0 {
		t.Fatalf("verify: %q", rep.Problems)
	}
}

// TestDataExtents: holes smaller than minHole are read as the zeros they
// hold, at the start, between data and at the end; a file whose holes are
// all small is an ordinary file; so is one with no hole.
func TestDataExtents(t *testing.T) {
	const k = 1 << 10
	cases := []struct {
		name string
		size int64
		data []int64 // offsets of 4 KiB of data
		want string  // extents, or "ordinary"
	}{
		{"all-hole", 1 << 30, nil, "[]"},
		{"small-holes", 256 * k, []int64{4 * k, 40 * k, 100 * k, 160 * k, 220 * k}, "ordinary"},
		{"small-hole-at-start", 1 << 20, []int64{32 * k}, "[{0 36864}]"},
		{"small-hole-at-end", 1 << 20, []int64{1<<20 - 40*k}, "[{1007616 40960}]"},
		{"one-big-hole", 1 << 20, []int64{0, 1<<20 - 4*k}, "[{0 4096} {1044480 4096}]"},
		{"joined", 10 << 20, []int64{1 << 20, 1<<20 + 64*k, 1<<20 + 200*k}, "[{1048576 69632} {1253376 4096}]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "f")
			data := map[int64][]byte{}
			for _, off := range tc.data {
				data[off] = []byte(strings.Repeat("x", 4096))
			}
			makeSparse(t, p, tc.size, data)
			f, err := os.Open(p)
			must(t, err)
			defer f.Close()
			exts, ok := dataExtents(f, tc.size)
			got := "ordinary"
			if ok {
				got = fmt.Sprint(exts)
			}
			if got != tc.want {
				t.Fatalf("extents %s, want %s", got, tc.want)
			}
		})
	}
	// More extents than maxExtents: the smallest holes are read instead.
	p := filepath.Join(t.TempDir(), "many")
	data := map[int64][]byte{}
	for i := int64(0); i < maxExtents+100; i++ {
		data[i*(minHole+4096)] = make([]byte, 4096)
		data[i*(minHole+4096)][0] = 1
	}
	size := int64(maxExtents+100) * (minHole + 4096)
	makeSparse(t, p, size+8<<20, data)
	f, err := os.Open(p)
	must(t, err)
	defer f.Close()
	exts, ok := dataExtents(f, size+8<<20)
	if !ok || len(exts) > maxExtents || len(exts) == 0 {
		t.Fatalf("%d extents (%v), want at most %d", len(exts), ok, maxExtents)
	}
	if last := exts[len(exts)-1]; last.Off+last.Len > size {
		t.Fatalf("the 8 MiB hole at the end is read: last extent %v", last)
	}
}

// TestValidateRefusesBadExtents: extents that overlap, go backwards, reach
// past the file's size or overflow on the way, are empty, or do not hold
// exactly the chunks' bytes are refused, naming the snapshot and the file,
// before restore creates or writes anything.
func TestValidateRefusesBadExtents(t *testing.T) {
	id := func(n int) string { return fmt.Sprintf("%064x", n) }
	sparse := func(size int64, chunkLen int64, exts ...Extent) Entry {
		e := Entry{Path: "f", Type: TypeFile, Mode: 0o644, Size: size, Sparse: true, Extents: exts}
		if chunkLen > 0 {
			e.Chunks = []Ref{{ID: id(1), Len: chunkLen}}
		}
		return e
	}
	dir := Entry{Path: "d", Type: TypeDir, Mode: 0o755}
	cases := []struct {
		name    string
		entries []Entry
		want    string
	}{
		{"overlap", []Entry{sparse(100, 20, Extent{0, 10}, Extent{5, 10})}, "extent 1 at offset 5, before the end (10) of the one before it"},
		{"unsorted", []Entry{sparse(100, 20, Extent{50, 10}, Extent{0, 10})}, "extent 1 at offset 0, before the end (60)"},
		{"same-offset", []Entry{sparse(100, 20, Extent{10, 10}, Extent{10, 10})}, "extent 1 at offset 10, before the end (20)"},
		{"past-size", []Entry{sparse(100, 10, Extent{95, 10})}, "extent 0 of 10 bytes at offset 95, which ends past its size 100"},
		{"starts-past-size", []Entry{sparse(100, 1, Extent{200, 1})}, "extent 0 of 1 bytes at offset 200, which ends past its size 100"},
		// Off+Len wraps around to a small or negative number in int64.
		{"overflow-end", []Entry{sparse(100, 10, Extent{math.MaxInt64 - 5, 10})}, "ends past its size 100"},
		{"overflow-len", []Entry{sparse(100, 10, Extent{1, math.MaxInt64})}, "ends past its size 100"},
		{"overflow-sum", []Entry{sparse(maxFileSize, 10, Extent{0, maxFileSize}, Extent{maxFileSize, math.MaxInt64})}, "extent 1 of 9223372036854775807 bytes at offset 17592186044416, which ends past"},
		{"negative-offset", []Entry{sparse(100, 20, Extent{-10, 20})}, "has extent 0 at a negative offset -10"},
		{"empty-extent", []Entry{sparse(100, 10, Extent{0, 0}, Extent{10, 10})}, "gives extent 0 a length of 0 bytes"},
		{"negative-extent", []Entry{sparse(100, 10, Extent{50, -10})}, "gives extent 0 a length of -10 bytes"},
		{"chunks-more", []Entry{sparse(100, 20, Extent{0, 10})}, "has 10 bytes of data in its extents but its first 1 chunks already hold more"},
		{"chunks-fewer", []Entry{sparse(100, 5, Extent{0, 10})}, "has 10 bytes of data in its extents but its chunks hold 5 bytes"},
		{"no-chunks", []Entry{sparse(1<<40, 0, Extent{0, 1 << 30})}, "has 1073741824 bytes of data in its extents but its chunks hold 0 bytes"},
		{"size-over-bound", []Entry{sparse(maxFileSize+1, 10, Extent{0, 10})}, "maxFileSize"},
		{"negative-size", []Entry{sparse(-1, 0)}, "negative size"},
		{"extents-not-sparse", []Entry{{Path: "f", Type: TypeFile, Mode: 0o644, Size: 10, Chunks: []Ref{{ID: id(1), Len: 10}}, Extents: []Extent{{0, 10}}}}, `file "f" lists extents but is not marked sparse`},
		{"dir-with-extents", []Entry{{Path: "f", Type: TypeDir, Mode: 0o755, Sparse: true}}, `dir "f" is given extents`},
		{"link-other-holes", []Entry{sparse(100, 10, Extent{0, 10}), func() Entry {
			e := sparse(100, 10, Extent{50, 10})
			e.Path, e.LinkTo = "g", "f"
			return e
		}()}, `file "g" is a hard link to "f", but its size, chunks, extents, mode or time differ`},
		{"link-not-sparse", []Entry{sparse(10, 10, Extent{0, 10}), {Path: "g", Type: TypeFile, Mode: 0o644, Size: 10, Chunks: []Ref{{ID: id(1), Len: 10}}, LinkTo: "f"}}, `file "g" is a hard link to "f", but`},
		{"in-dir", []Entry{dir, func() Entry { e := sparse(100, 20, Extent{0, 10}, Extent{5, 10}); e.Path = "d/f"; return e }()}, `file "d/f" has extent 1`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			repo := openRepo(t, "file://"+t.TempDir())
			m := &Manifest{Version: FormatVersion, ID: FormatID(1), Namespace: repo.Namespace, Session: repo.Session, Entries: tc.entries}
			err := m.validate()
			if err == nil || !strings.Contains(err.Error(), "snapshot "+m.ID) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validate: %v, want an error naming snapshot %s and saying %q", err, m.ID, tc.want)
			}
			if !strings.Contains(err.Error(), `"f"`) && !strings.Contains(err.Error(), `"d/f"`) {
				t.Fatalf("validate: %v does not name the file", err)
			}
			// Through the store and the JSON, restore refuses it with
			// nothing created.
			restoreRefuses(t, repo, m, tc.want)
			rep, err := Verify(context.Background(), repo, VerifyOptions{Quick: true})
			must(t, err)
			if !strings.Contains(strings.Join(rep.Problems, "\n"), tc.want) {
				t.Fatalf("verify: %q, want a problem saying %q", rep.Problems, tc.want)
			}
		})
	}
	// The largest legitimate ones pass: data up to the last byte, extents
	// that touch, a file that is all hole.
	for _, e := range []Entry{
		sparse(maxFileSize, maxChunk, Extent{maxFileSize - maxChunk, maxChunk}),
		sparse(100, 20, Extent{0, 10}, Extent{10, 10}),
		sparse(1<<40, 0),
	} {
		m := &Manifest{Version: FormatVersion, ID: FormatID(1), Entries: []Entry{e}}
		if err := m.validate(); err != nil {
			t.Errorf("%v: %v", e.Extents, err)
		}
	}
}

// TestFormatVersions: this tether writes format 4 and reads 1 to 4; a newer
// format is refused with what to do, as tethers that read only up to 3
// refuse format 4 (whose sparse files they would restore wrong).
func TestFormatVersions(t *testing.T) {
	if FormatVersion != 4 {
		t.Fatalf("FormatVersion = %d", FormatVersion)
	}
	for v := 1; v <= 6; v++ {
		raw := fmt.Sprintf(`{"version":%d,"id":"0000000001","entries":[{"path":"f","type":"file","mode":420,"size":10,"sparse":true}],"summary":{}}`, v)
		_, err := unmarshalManifest([]byte(raw))
		switch {
		case v <= FormatVersion && err != nil:
			t.Errorf("format %d: %v", v, err)
		case v > FormatVersion && (err == nil || !strings.Contains(err.Error(), "supports 1..4): upgrade tether")):
			t.Errorf("format %d: %v, want it refused", v, err)
		}
	}
	// The stored form of a sparse entry, as older readers would see it.
	m := &Manifest{Version: FormatVersion, ID: FormatID(1), Entries: []Entry{{Path: "f", Type: TypeFile, Mode: 0o644, Size: 1 << 30, Sparse: true, Extents: []Extent{{1 << 20, 3}}, Chunks: []Ref{{ID: fmt.Sprintf("%064x", 1), Len: 3}}}}}
	raw, err := marshalManifest(m)
	must(t, err)
	if !strings.Contains(string(raw), `"sparse":true,"extents":[{"off":1048576,"len":3}]`) || !strings.Contains(string(raw), `"version":4`) {
		t.Fatalf("stored form: %s", raw)
	}
	back, err := unmarshalManifest(raw)
	must(t, err)
	must(t, back.validate())
	if e := back.Entries[0]; !e.Sparse || len(e.Extents) != 1 || e.Extents[0] != (Extent{1 << 20, 3}) {
		t.Fatalf("decoded: %+v", e)
	}
}
