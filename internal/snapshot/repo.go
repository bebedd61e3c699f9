package snapshot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/semaphore"

	"github.com/tether-dev/tether/internal/store"
)

// Repo is one session's area of a store:
//
//	<namespace>/<session>/objects/<2 hex>/<sha256>   chunks, named by the hash of their plain content
//	<namespace>/<session>/snapshots/<id>              manifests; a snapshot exists once its manifest does
//	<namespace>/<session>/locks/<kind>-<time>-<rand>  who is saving or pruning right now
//	<namespace>/<session>/writers/<epoch>             who took the session over, in order (writer.go)
//
// Objects and manifests are immutable. Only Prune deletes, and it deletes
// manifests before the objects they alone referenced.
type Repo struct {
	st        store.Store
	Namespace string
	Session   string
	base      string

	// lastBase is the newest base object read: consecutive manifests
	// usually share it (verify and prune read every manifest).
	mu       sync.Mutex
	lastBase *baseState

	// budget bounds the plain bytes of the chunks this process has fetched
	// and not yet written out (see fetchChunk), whatever the fetch counts.
	budget *semaphore.Weighted
	fence  fenceCache // writer epochs and manifest heads (writer.go)
}

// OpenRepo validates the names and returns the session's area of st.
func OpenRepo(st store.Store, namespace, session string) (*Repo, error) {
	if err := ValidateName("namespace", namespace); err != nil {
		return nil, err
	}
	if err := ValidateName("session", session); err != nil {
		return nil, err
	}
	return &Repo{st: st, Namespace: namespace, Session: session, base: namespace + "/" + session + "/", budget: semaphore.NewWeighted(fetchBudget)}, nil
}

// Store returns the underlying store.
func (r *Repo) Store() store.Store { return r.st }

func (r *Repo) String() string {
	return fmt.Sprintf("session %s/%s in %s", r.Namespace, r.Session, r.st)
}

func (r *Repo) objectKey(id string) string {
	return r.base + "objects/" + id[:2] + "/" + id
}

func (r *Repo) manifestKey(id string) string { return r.base + "snapshots/" + id }

// Object encoding: one header byte, then the payload.
const (
	encRaw  byte = 0
	encZstd byte = 1
)

// Limits on what an object may hold once decoded. Whoever can write the
// store can put a few KiB that inflate to gigabytes under any name, so every
// object is decoded into a buffer of the length the reader expects, and
// nothing claiming more is ever allocated. A chunk's length is given by the
// manifest (at most maxChunk, validate checks); a base object's by the
// manifest that names it, within maxBaseLen; a manifest's own length is not
// recorded anywhere, so it has a ceiling of its own: a format-2 manifest is
// a delta of at most about an eighth of its base (32 MiB for the largest),
// and the rest leaves room for format-1 manifests, which list every entry.
const (
	maxBaseLen     = 256 << 20
	maxManifestLen = 64 << 20
	// fetchBudget bounds the chunk data held in memory by fetches under way
	// (restore and verify), so their memory does not grow with the number
	// of fetches nor with what the store claims.
	fetchBudget = 64 << 20
)

var (
	// A 1 MiB window (chunks are at most 4 MiB) and the low-memory mode keep
	// the encoder's history buffers at about 2 MiB instead of 9: the sync
	// sidecar holds this encoder for the whole session.
	zenc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20), zstd.WithLowerEncoderMem(true))
	// zdec decodes objects of a known length: DecodeAll stops at the
	// capacity of the buffer it is given (for some blocks the check comes
	// after the block, so it can overshoot by one block, 128 KiB, no more).
	zdec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecodeAllCapLimit(true), zstd.WithDecoderMaxMemory(maxBaseLen), zstd.WithDecoderLowmem(true))
)

// encode compresses data when that saves at least 1/16 of it; random or already
// compressed data is stored as is, so restoring it costs no decompression.
func encode(data []byte) []byte {
	out := make([]byte, 1, len(data)/2+64)
	out[0] = encZstd
	out = zenc.EncodeAll(data, out)
	if len(out) < len(data)-len(data)/16 {
		return out
	}
	raw := make([]byte, 1+len(data))
	raw[0] = encRaw
	copy(raw[1:], data)
	return raw
}

// decode returns the content of an object that must hold exactly want
// bytes (0 < want <= maxBaseLen), allocating no more than that.
func decode(obj []byte, want int64) ([]byte, error) {
	if want <= 0 || want > maxBaseLen {
		return nil, fmt.Errorf("an expected length of %d bytes is outside 1..%d", want, maxBaseLen)
	}
	data, err := decodeLimit(obj, want, fmt.Sprintf("the %d bytes it should hold", want))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != want {
		return nil, fmt.Errorf("it holds %d bytes, the manifest says %d", len(data), want)
	}
	return data, nil
}

// decodeManifest returns the content of a manifest object: as long as its
// zstd header says (encode's frames always say), within maxManifestLen.
func decodeManifest(obj []byte) ([]byte, error) {
	limit := int64(maxManifestLen)
	what := fmt.Sprintf("the manifest limit of %d bytes (maxManifestLen)", limit)
	if len(obj) > 1 && obj[0] == encZstd {
		var h zstd.Header
		if err := h.Decode(obj[1:]); err != nil {
			return nil, fmt.Errorf("bad zstd header: %w", err)
		}
		if h.HasFCS && h.FrameContentSize > uint64(limit) {
			return nil, fmt.Errorf("it says it decompresses to %d bytes, more than %s; refused", h.FrameContentSize, what)
		}
		if h.HasFCS && h.FrameContentSize > 0 {
			limit, what = int64(h.FrameContentSize), fmt.Sprintf("the %d bytes its header gives", h.FrameContentSize)
		}
	}
	return decodeLimit(obj, limit, what)
}

// decodeLimit returns the content of an object, refusing one of more than
// limit bytes without allocating more than that; what describes the limit
// for errors.
func decodeLimit(obj []byte, limit int64, what string) ([]byte, error) {
	if len(obj) == 0 {
		return nil, errors.New("empty object (no header)")
	}
	switch obj[0] {
	case encRaw:
		if int64(len(obj)-1) > limit {
			return nil, fmt.Errorf("it holds %d bytes, more than %s", len(obj)-1, what)
		}
		return obj[1:], nil
	case encZstd:
		data, err := zdec.DecodeAll(obj[1:], make([]byte, 0, limit))
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) || errors.Is(err, zstd.ErrWindowSizeExceeded) {
			return nil, fmt.Errorf("it decompresses to more than %s; refused before inflating it (a decompression bomb?)", what)
		}
		if err != nil {
			return nil, fmt.Errorf("it does not decompress within %s: %w", what, err)
		}
		return data, nil
	default:
		return nil, fmt.Errorf("unknown encoding %d", obj[0])
	}
}

// getObject reads an object that decodes to at most plain bytes: encode
// never stores more than the header byte and the plain content, so a
// larger object is corrupt and is refused before it is read into memory.
func (r *Repo) getObject(ctx context.Context, key string, plain int64) ([]byte, error) {
	obj, err := store.GetLimit(ctx, r.st, key, 1+plain)
	if errors.Is(err, store.ErrTooLarge) {
		return nil, &CorruptError{Key: key, Reason: fmt.Sprintf("the store holds a larger object than its content can need: %v", err)}
	}
	return obj, err
}

// hashID is the name of a chunk: the hex SHA-256 of its plain content.
func hashID(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// CorruptError says an object's content does not match its name or cannot be decoded.
type CorruptError struct {
	Key    string
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("object %s is corrupt: %s; run `tether snapshot verify` to list every damaged snapshot", e.Key, e.Reason)
}

// MissingError says a snapshot references an object the store does not have.
type MissingError struct {
	Key      string
	Snapshot string
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("snapshot %s references object %s, which is missing from the store; the snapshot is incomplete: restore an earlier one (`tether snapshot ls`) and run `tether snapshot verify`", e.Snapshot, e.Key)
}

// readChunk fetches a chunk (or a base object) and checks its content
// against its name and the length c.Len the manifest gives it.
func (r *Repo) readChunk(ctx context.Context, c Ref, snapshotID string) ([]byte, error) {
	key := r.objectKey(c.ID)
	if c.Len <= 0 || c.Len > maxBaseLen {
		return nil, &CorruptError{Key: key, Reason: fmt.Sprintf("a manifest gives it %d bytes, outside 1..%d", c.Len, maxBaseLen)}
	}
	obj, err := r.getObject(ctx, key, c.Len)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &MissingError{Key: key, Snapshot: snapshotID}
	}
	if err != nil {
		return nil, err
	}
	data, err := decode(obj, c.Len)
	if err != nil {
		return nil, &CorruptError{Key: key, Reason: err.Error()}
	}
	if got := hashID(data); got != c.ID {
		return nil, &CorruptError{Key: key, Reason: "its content hashes to " + got[:16] + "…"}
	}
	return data, nil
}

// fetchChunk is readChunk within the process's fetch budget: the chunk's
// bytes are counted against it until release is called, once they have
// been written out.
func (r *Repo) fetchChunk(ctx context.Context, c Ref, snapshotID string) (data []byte, release func(), err error) {
	release, err = r.reserve(ctx, c.Len)
	if err != nil {
		return nil, nil, err
	}
	data, err = r.readChunk(ctx, c, snapshotID)
	if err != nil {
		release()
		return nil, nil, err
	}
	return data, release, nil
}

// reserve takes n bytes (at most the whole budget) from the fetch budget
// and returns the function that gives them back. A holder of reserved
// chunks must be able to hand them on without reserving more (blobReader
// reserves in chunk order, and its reader consumes them in that order), so
// the budget cannot deadlock.
func (r *Repo) reserve(ctx context.Context, n int64) (release func(), err error) {
	w := min(max(n, 1), fetchBudget)
	if err := r.budget.Acquire(ctx, w); err != nil {
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { r.budget.Release(w) }) }, nil
}

// writeChunk stores a chunk unless the store already has it. It returns the
// number of bytes sent (0 when the chunk was already there). The write is not
// necessarily durable until syncChunks: the manifest that refers to the
// chunks is written after that, so no snapshot ever refers to a chunk a power
// cut could take away.
func (r *Repo) writeChunk(ctx context.Context, id string, data []byte) (int64, error) {
	key := r.objectKey(id)
	obj := encode(data)
	if oi, err := r.st.Stat(ctx, key); err == nil {
		if oi.Size == int64(len(obj)) {
			return 0, nil
		}
		// Present with another size: left torn by a power cut before a sync,
		// or written by another version's encoder. Keep it only if it holds
		// what its name says.
		if _, rerr := r.readChunk(ctx, Ref{ID: id, Len: int64(len(data))}, ""); rerr == nil {
			return 0, nil
		}
		if err := r.st.Put(ctx, key, obj); err != nil {
			return 0, err
		}
		return int64(len(obj)), nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return 0, err
	}
	err := store.PutIfAbsentUnsynced(ctx, r.st, key, obj)
	if errors.Is(err, store.ErrExists) {
		// Usually a concurrent writer stored the same content. But on a store
		// that tore an earlier upload, the key may hold garbage: check, and
		// replace it if so (its name says what it must hold).
		if _, rerr := r.readChunk(ctx, Ref{ID: id, Len: int64(len(data))}, ""); rerr == nil {
			return 0, nil
		}
		err = r.st.Put(ctx, key, obj)
	}
	if err != nil {
		return 0, err
	}
	return int64(len(obj)), nil
}

// SnapshotIDs lists the complete snapshots, oldest first.
func (r *Repo) SnapshotIDs(ctx context.Context) ([]string, error) {
	prefix := r.base + "snapshots/"
	var ids []string
	err := r.st.List(ctx, prefix, func(oi store.ObjectInfo) error {
		name := strings.TrimPrefix(oi.Key, prefix)
		if id, _, err := ParseID(name); err == nil && id == name {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list snapshots of %s: %w", r, err)
	}
	sort.Strings(ids)
	return ids, nil
}

// Latest returns the newest complete snapshot id that is not stale (see
// writer.go), or "" when there is none.
func (r *Repo) Latest(ctx context.Context) (string, error) {
	ids, err := r.SnapshotIDs(ctx)
	if err != nil {
		return "", err
	}
	return r.current(ctx, ids, nil)
}

// Resolve turns a user's snapshot id ("", "latest", "42") into an existing id.
func (r *Repo) Resolve(ctx context.Context, want string) (string, error) {
	ids, err := r.SnapshotIDs(ctx)
	if err != nil {
		return "", err
	}
	if want == "" || want == "latest" {
		if len(ids) == 0 {
			return "", fmt.Errorf("%s has no snapshots yet", r)
		}
		id, err := r.current(ctx, ids, nil)
		if err == nil && id == "" {
			err = fmt.Errorf("every snapshot of %s is stale (saved by a writer after a newer one took the session over; `tether snapshot ls` shows them): name one explicitly to restore it", r)
		}
		return id, err
	}
	id, _, err := ParseID(want)
	if err != nil {
		return "", err
	}
	i := sort.SearchStrings(ids, id)
	if i == len(ids) || ids[i] != id {
		return "", fmt.Errorf("snapshot %s does not exist in %s (%d snapshots; `tether snapshot ls` lists them)", want, r, len(ids))
	}
	return id, nil
}

// LoadManifest reads and checks one snapshot's manifest.
func (r *Repo) LoadManifest(ctx context.Context, id string) (*Manifest, error) {
	key := r.manifestKey(id)
	obj, err := r.getObject(ctx, key, maxManifestLen)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("snapshot %s does not exist in %s", id, r)
	}
	if err != nil {
		return nil, fmt.Errorf("read snapshot %s of %s: %w", id, r, err)
	}
	data, err := decodeManifest(obj)
	if err != nil {
		return nil, &CorruptError{Key: key, Reason: err.Error()}
	}
	m, err := unmarshalManifest(data)
	if err != nil {
		return nil, &CorruptError{Key: key, Reason: err.Error()}
	}
	if m.ID != id {
		return nil, &CorruptError{Key: key, Reason: fmt.Sprintf("it says it is snapshot %s", m.ID)}
	}
	if m.Base != nil {
		b, err := r.loadBase(ctx, *m.Base, id)
		if err != nil {
			return nil, err
		}
		if err := m.resolve(b); err != nil {
			return nil, &CorruptError{Key: key, Reason: err.Error()}
		}
	}
	return m, nil
}

// loadBase reads and decodes a base object, checked against its name like
// every chunk.
func (r *Repo) loadBase(ctx context.Context, ref Ref, snapshotID string) (*baseState, error) {
	r.mu.Lock()
	if b := r.lastBase; b != nil && b.ref == ref {
		r.mu.Unlock()
		return b, nil
	}
	r.mu.Unlock()
	if ref.Len <= 0 || ref.Len > maxBaseLen {
		return nil, &CorruptError{Key: r.manifestKey(snapshotID), Reason: fmt.Sprintf("it names a base object of %d bytes, outside 1..%d (maxBaseLen)", ref.Len, maxBaseLen)}
	}
	data, err := r.readChunk(ctx, ref, snapshotID)
	if err != nil {
		return nil, err
	}
	b, err := unmarshalBase(data, ref)
	if err != nil {
		return nil, &CorruptError{Key: r.objectKey(ref.ID), Reason: err.Error()}
	}
	r.mu.Lock()
	r.lastBase = b
	r.mu.Unlock()
	return b, nil
}

// parallel runs fn for every item with at most n at once and returns the first error.
func parallel[T any](ctx context.Context, n int, items []T, fn func(context.Context, T) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	sem := make(chan struct{}, n)
	for _, it := range items {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(it T) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(ctx, it); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
					cancel()
				}
				mu.Unlock()
			}
		}(it)
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return firstErr
}
