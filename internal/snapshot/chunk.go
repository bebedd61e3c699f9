package snapshot

import (
	"errors"
	"io"

	chunkers "github.com/PlakarKorp/go-cdc-chunkers"
	_ "github.com/PlakarKorp/go-cdc-chunkers/chunkers/fastcdc" // registers fastcdc-v1.0.0
)

// Chunk sizes. A file smaller than minChunk is one chunk. An append to a file
// does not re-chunk what was there (see appendRegion), so the average size can
// be large without making small appends expensive.
const (
	minChunk    = 256 << 10
	normalChunk = 1 << 20
	maxChunk    = 4 << 20
	cdcName     = "fastcdc-v1.0.0"
)

// splitter cuts a stream into content-defined chunks; it reuses one buffer.
type splitter struct {
	c *chunkers.Chunker
}

func newSplitter() *splitter {
	c, err := chunkers.NewChunker(cdcName, eofReader{}, &chunkers.ChunkerOpts{MinSize: minChunk, NormalSize: normalChunk, MaxSize: maxChunk})
	if err != nil {
		panic("snapshot: chunker setup: " + err.Error()) // constants above are wrong
	}
	return &splitter{c: c}
}

// split calls fn with each chunk of r, in order. The slice is only valid
// during the call.
func (s *splitter) split(r io.Reader, fn func([]byte) error) error {
	s.c.Reset(r)
	for {
		data, err := s.c.Next()
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if len(data) > 0 {
			if ferr := fn(data); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
	}
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// appendRegion decides, for a file that grew and whose first len(prev) chunks
// are unchanged, how many of those chunks to keep: the rest, with the new tail,
// is chunked again. Small tail chunks merge like a binary counter: a trailing
// small chunk is folded into the new region while it is no larger than the
// region, so an append of n bytes costs about n*log(minChunk/n) uploaded over
// time, and a file never ends in more than a few dozen small chunks.
func appendRegion(prev []Ref, oldSize, newSize int64) (keep int, regionStart int64) {
	keep = len(prev)
	regionStart = oldSize
	for keep > 0 {
		last := prev[keep-1]
		if last.Len >= minChunk || last.Len > newSize-regionStart {
			break
		}
		keep--
		regionStart -= last.Len
	}
	return keep, regionStart
}
