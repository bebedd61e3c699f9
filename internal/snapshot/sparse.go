package snapshot

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Sparse files keep their holes. A 2 GiB disk image or database file with a
// few kilobytes written is a few kilobytes on disk; read as a whole it is
// 2 GiB of zeros to read and chunk, and restored by writing it, 2 GiB of
// disk. A save asks the file system where a file's data is (SEEK_DATA,
// SEEK_HOLE), reads only that, and records the extents in the entry
// (Entry.Sparse, Entry.Extents); a restore sets the size with ftruncate and
// writes the data at its offsets, leaving the holes unwritten.

// minHole is the smallest hole worth keeping. Smaller ones are read as the
// zeros they hold: a manifest need not list the gaps of a file that is
// sparse only here and there, and a file whose holes are all smaller keeps
// the ordinary form.
const minHole = 64 << 10

// maxExtents bounds the extents a save records for one file: past it, the
// smallest holes are read as zeros instead (see dataExtents), so that a
// file punched full of holes does not make every manifest megabytes long.
const maxExtents = 4096

// holesLikely reports, from a stat the walk already made, whether a file
// may have a hole worth keeping: at least minHole of its size is not
// allocated. Every other file is read as before, without a further
// system call. (A file with holes and as many blocks allocated past its
// end is read whole: it is rare, and still saved exactly.)
func holesLikely(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && fi.Size()-st.Blocks*512 >= minHole
}

// dataExtents asks the file system where f's data is, within its first size
// bytes. Holes shorter than minHole are taken into the data around them
// (as are more, while there would be over maxExtents). It returns false when
// no hole is left, or the file system cannot say (the file is then read as
// an ordinary one).
func dataExtents(f *os.File, size int64) ([]Extent, bool) {
	var exts []Extent
	hole := int64(minHole)
	for off := int64(0); off < size; {
		start, err := f.Seek(off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole from off on (or the file shrank)
		}
		if err != nil || start < off {
			return nil, false
		}
		if start >= size {
			break
		}
		end, err := f.Seek(start, unix.SEEK_HOLE)
		if err != nil || end <= start {
			return nil, false
		}
		end = min(end, size)
		exts = append(exts, Extent{Off: start, Len: end - start})
		for len(exts) > maxExtents {
			hole *= 2
			exts = mergeExtents(exts, hole)
		}
		off = end
	}
	exts = mergeExtents(exts, hole)
	// Small holes at the start and the end are read as zeros too.
	if len(exts) > 0 && exts[0].Off < hole {
		exts[0].Len += exts[0].Off
		exts[0].Off = 0
	}
	if n := len(exts); n > 0 {
		if last := &exts[n-1]; size-(last.Off+last.Len) < hole {
			last.Len = size - last.Off
		}
	}
	if len(exts) == 1 && exts[0] == (Extent{0, size}) {
		return nil, false
	}
	return exts, true
}

// mergeExtents joins, in place, the extents that less than hole bytes keep
// apart.
func mergeExtents(exts []Extent, hole int64) []Extent {
	out := exts[:0]
	for _, x := range exts {
		if n := len(out); n > 0 && x.Off-(out[n-1].Off+out[n-1].Len) < hole {
			out[n-1].Len = x.Off + x.Len - out[n-1].Off
			continue
		}
		out = append(out, x)
	}
	return out
}

// extentReader reads the data of a sparse file, its extents one after the
// other. A file that shrank while it was read ends early: read then gives
// the extents (or parts of extents) that were read, which is what the chunks
// hold.
type extentReader struct {
	f     *os.File
	exts  []Extent
	i     int   // the extent being read
	done  int64 // of which so many bytes were read
	short bool  // the file ended before its last extent did
}

func (r *extentReader) Read(p []byte) (int, error) {
	for r.i < len(r.exts) && !r.short {
		x := r.exts[r.i]
		if r.done == x.Len {
			r.i, r.done = r.i+1, 0
			continue
		}
		n, err := r.f.ReadAt(p[:min(int64(len(p)), x.Len-r.done)], x.Off+r.done)
		r.done += int64(n)
		if errors.Is(err, io.EOF) {
			r.short = true
			err = nil
		}
		if n == 0 && err == nil {
			continue
		}
		return n, err
	}
	return 0, io.EOF
}

// read returns the extents whose data was read, in full.
func (r *extentReader) read() []Extent {
	if !r.short {
		return r.exts
	}
	got := append([]Extent(nil), r.exts[:r.i]...)
	if r.done > 0 {
		got = append(got, Extent{Off: r.exts[r.i].Off, Len: r.done})
	}
	return got
}

// extentWriter writes the data of a sparse file, as its chunks come in
// order, at the offsets of its extents (which validate checked: sorted,
// apart, within the size and holding exactly the chunks' bytes).
type extentWriter struct {
	f    *os.File
	exts []Extent
	i    int   // the extent being written
	done int64 // of which so many bytes were written
}

func (w *extentWriter) Write(data []byte) error {
	for len(data) > 0 {
		if w.i == len(w.exts) {
			return fmt.Errorf("%d bytes of data past its extents", len(data))
		}
		x := w.exts[w.i]
		n := min(int64(len(data)), x.Len-w.done)
		if _, err := w.f.WriteAt(data[:n], x.Off+w.done); err != nil {
			return err
		}
		data = data[n:]
		if w.done += n; w.done == x.Len {
			w.i, w.done = w.i+1, 0
		}
	}
	return nil
}
