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

	fence fenceCache // writer epochs and manifest heads (writer.go)
}

// OpenRepo validates the names and returns the session's area of st.
func OpenRepo(st store.Store, namespace, session string) (*Repo, error) {
	if err := ValidateName("namespace", namespace); err != nil {
		return nil, err
	}
	if err := ValidateName("session", session); err != nil {
		return nil, err
	}
	return &Repo{st: st, Namespace: namespace, Session: session, base: namespace + "/" + session + "/"}, nil
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

var (
	// A 1 MiB window (chunks are at most 4 MiB) and the low-memory mode keep
	// the encoder's history buffers at about 2 MiB instead of 9: the sync
	// sidecar holds this encoder for the whole session.
	zenc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20), zstd.WithLowerEncoderMem(true))
	zdec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(1<<30))
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

func decode(obj []byte) ([]byte, error) {
	if len(obj) == 0 {
		return nil, errors.New("empty object (no header)")
	}
	switch obj[0] {
	case encRaw:
		return obj[1:], nil
	case encZstd:
		return zdec.DecodeAll(obj[1:], nil)
	default:
		return nil, fmt.Errorf("unknown encoding %d", obj[0])
	}
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

// readChunk fetches a chunk and checks its content against its name.
func (r *Repo) readChunk(ctx context.Context, id, snapshotID string) ([]byte, error) {
	key := r.objectKey(id)
	obj, err := r.st.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &MissingError{Key: key, Snapshot: snapshotID}
	}
	if err != nil {
		return nil, err
	}
	data, err := decode(obj)
	if err != nil {
		return nil, &CorruptError{Key: key, Reason: err.Error()}
	}
	if got := hashID(data); got != id {
		return nil, &CorruptError{Key: key, Reason: "its content hashes to " + got[:16] + "…"}
	}
	return data, nil
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
		if _, rerr := r.readChunk(ctx, id, ""); rerr == nil {
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
		if _, rerr := r.readChunk(ctx, id, ""); rerr == nil {
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
	return r.current(ctx, ids)
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
		id, err := r.current(ctx, ids)
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
	obj, err := r.st.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("snapshot %s does not exist in %s", id, r)
	}
	if err != nil {
		return nil, fmt.Errorf("read snapshot %s of %s: %w", id, r, err)
	}
	data, err := decode(obj)
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
	data, err := r.readChunk(ctx, ref.ID, snapshotID)
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
