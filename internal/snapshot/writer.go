package snapshot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/tether-dev/tether/internal/store"
)

// One writer per session. Every process that means to save a session's
// workspace (a hydrate, a standalone sync, `snapshot save`) first takes the
// session's next writer epoch: an object written only if absent,
//
//	<namespace>/<session>/writers/<epoch, zero-padded>
//
// so of two takers of one number exactly one wins (the other retries with the
// next). The object records who took it and the newest snapshot id that
// existed just before (Observed). Every manifest records its writer's epoch,
// and a save lists writers/ before writing its manifest and stops with a
// FencedError when a newer epoch exists.
//
// That check and the manifest write are two steps, so the manifest of a save
// that passed the check can still land after a newer writer took over. Such a
// snapshot is stale: its epoch e is older than some epoch E whose Observed is
// older than the snapshot (the snapshot did not exist when E took over, yet
// its writer had been superseded by E). Snapshot selection (Latest, Resolve of
// "latest", the saver's parent) skips stale snapshots. None of this reads a
// clock: only the order of ids and epochs counts.
//
// Where PutIfAbsent is Stat-then-Put (an S3 server without conditional
// writes) two takers of one number can both win; see the README.

// Writer is one taker of a session's writer epoch, as stored under writers/.
type Writer struct {
	Namespace string `json:"namespace"`
	Session   string `json:"session"`
	Epoch     uint64 `json:"epoch"`
	// ID is random: it tells apart two processes that claim the same epoch
	// (a copied writer file, or two winners on a store without conditional
	// writes).
	ID   string `json:"writer"`
	Host string `json:"host,omitempty"`
	PID  int    `json:"pid,omitempty"`
	// Via says what took the epoch: "hydrate", "sync", "snapshot save".
	Via string `json:"via,omitempty"`
	// Time is the taker's clock, for people only: nothing compares it.
	Time time.Time `json:"time"`
	// Observed is the newest snapshot id listed before the epoch was taken
	// ("" when there was none).
	Observed string `json:"observed,omitempty"`
}

// maxWriterObject bounds what is read of an epoch object: it is a few hundred
// bytes, and a store is not trusted to keep it so.
const maxWriterObject = 64 << 10

func (r *Repo) writersPrefix() string         { return r.base + "writers/" }
func (r *Repo) writerKey(epoch uint64) string { return r.writersPrefix() + FormatID(epoch) }

func (w *Writer) String() string { return fmt.Sprintf("epoch %d (%s)", w.Epoch, w.describe()) }

// describe names the writer for a person: where it ran and what took it.
func (w *Writer) describe() string {
	return "host " + printable(w.Host, 64) + ", " + printable(w.Via, 32)
}

func (w *Writer) sameAs(o *Writer) bool { return o != nil && w.Epoch == o.Epoch && w.ID == o.ID }

func newWriterID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func validWriterID(id string) bool {
	return len(id) == 32 && strings.Trim(id, "0123456789abcdef") == ""
}

// printable keeps a string read from the store to one short line of visible
// characters, so a message built from it stays one line.
func printable(s string, max int) string {
	if s == "" {
		return "?"
	}
	var b strings.Builder
	for i, c := range s {
		if i >= max {
			b.WriteString("…")
			break
		}
		if !unicode.IsPrint(c) {
			c = '?'
		}
		b.WriteRune(c)
	}
	return b.String()
}

// ErrFenced is what every FencedError wraps (errors.Is).
var ErrFenced = errors.New("fenced: a newer writer took the session over")

// FencedError says a save was refused because a newer writer epoch exists:
// another process took the session over. Nothing more was written.
type FencedError struct {
	Session string  // namespace/session
	Own     *Writer // the fenced writer
	By      *Writer // the newest epoch; only Epoch is set when its object could not be read
}

// Fenced lets callers that must not import this package (exit codes) recognise it.
func (f *FencedError) Fenced() bool { return true }

func (f *FencedError) Unwrap() error { return ErrFenced }

func (f *FencedError) Error() string {
	by := fmt.Sprintf("epoch %d", f.By.Epoch)
	if f.By.ID != "" {
		by = fmt.Sprintf("epoch %d (%s, at %s by its clock)", f.By.Epoch, f.By.describe(), f.By.Time.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("session %s was taken over by writer %s; this writer, epoch %d (%s), stopped saving and wrote nothing more: the session's work continues there",
		f.Session, by, f.Own.Epoch, f.Own.describe())
}

// fenceCache keeps what fencing reads from the store. Epoch objects and
// manifests are immutable, so nothing in it goes out of date.
type fenceCache struct {
	mu      sync.Mutex
	writers map[uint64]*Writer       // epoch -> its object
	heads   map[string]*manifestHead // snapshot id -> its writer
}

// manifestHead is the part of a manifest fencing needs.
type manifestHead struct {
	ID     string `json:"id"`
	Writer string `json:"writer,omitempty"`
	Epoch  uint64 `json:"epoch,omitempty"`
}

func (c *fenceCache) writer(epoch uint64) *Writer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writers[epoch]
}

func (c *fenceCache) head(id string) *manifestHead {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.heads[id]
}

func (c *fenceCache) putWriter(w *Writer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writers == nil {
		c.writers = map[uint64]*Writer{}
	}
	c.writers[w.Epoch] = w
}

func (c *fenceCache) putHead(h *manifestHead) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.heads == nil {
		c.heads = map[string]*manifestHead{}
	}
	c.heads[h.ID] = h
}

// keepHeads forgets the heads of snapshots no longer listed (pruned), so a
// sync that runs for weeks holds one head per kept snapshot.
func (c *fenceCache) keepHeads(ids []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.heads) <= 2*len(ids)+16 {
		return
	}
	keep := make(map[string]bool, len(ids))
	for _, id := range ids {
		keep[id] = true
	}
	for id := range c.heads {
		if !keep[id] {
			delete(c.heads, id)
		}
	}
}

// Epochs lists the session's writer epochs, oldest first (a listing only).
func (r *Repo) Epochs(ctx context.Context) ([]uint64, error) {
	var epochs []uint64
	err := r.st.List(ctx, r.writersPrefix(), func(oi store.ObjectInfo) error {
		name := strings.TrimPrefix(oi.Key, r.writersPrefix())
		if id, n, err := ParseID(name); err == nil && id == name {
			epochs = append(epochs, n)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list writers of %s: %w", r, err)
	}
	sort.Slice(epochs, func(i, j int) bool { return epochs[i] < epochs[j] })
	return epochs, nil
}

// LoadWriter reads and checks one epoch object. An object that is too large,
// is not JSON or names another epoch or session is a CorruptError.
func (r *Repo) LoadWriter(ctx context.Context, epoch uint64) (*Writer, error) {
	if w := r.fence.writer(epoch); w != nil {
		return w, nil
	}
	key := r.writerKey(epoch)
	data, err := r.st.Get(ctx, key)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("writer epoch %d of %s: %w", epoch, r, err)
		}
		return nil, fmt.Errorf("read writer epoch %d of %s: %w", epoch, r, err)
	}
	if len(data) > maxWriterObject {
		return nil, &CorruptError{Key: key, Reason: fmt.Sprintf("it holds %d bytes, more than a writer record can", len(data))}
	}
	var w Writer
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, &CorruptError{Key: key, Reason: "not a writer record: " + err.Error()}
	}
	switch {
	case w.Epoch != epoch:
		return nil, &CorruptError{Key: key, Reason: fmt.Sprintf("it says it is epoch %d", w.Epoch)}
	case w.Namespace != r.Namespace || w.Session != r.Session:
		return nil, &CorruptError{Key: key, Reason: "it names another session"}
	case !validWriterID(w.ID):
		return nil, &CorruptError{Key: key, Reason: "its writer id is not 32 hex digits"}
	}
	if w.Observed != "" {
		if id, _, err := ParseID(w.Observed); err != nil || id != w.Observed {
			return nil, &CorruptError{Key: key, Reason: "its observed snapshot id is not valid"}
		}
	}
	r.fence.putWriter(&w)
	return &w, nil
}

// TakeEpoch makes the caller the session's newest writer: it lists the
// snapshots (the newest becomes Observed), then writes the epoch after the
// newest listed, only if absent, and on a clash lists again and tries the next
// number. Every writer with an older epoch is fenced from then on. via says
// what takes it ("hydrate", "sync", ...), for the messages of the fenced.
func TakeEpoch(ctx context.Context, r *Repo, via string) (*Writer, error) {
	host, _ := os.Hostname()
	for attempt := 0; ; attempt++ {
		epochs, err := r.Epochs(ctx)
		if err != nil {
			return nil, fmt.Errorf("take writer epoch: %w", err)
		}
		// The listing of snapshots comes after that of writers and before
		// the write: Observed must not name a snapshot that appeared after
		// the epoch was taken, or an old writer's late snapshot could pass.
		ids, err := r.SnapshotIDs(ctx)
		if err != nil {
			return nil, fmt.Errorf("take writer epoch: %w", err)
		}
		w := &Writer{Namespace: r.Namespace, Session: r.Session, Epoch: 1, ID: newWriterID(), Host: host, PID: os.Getpid(), Via: via, Time: time.Now().UTC()}
		if len(epochs) > 0 {
			w.Epoch = epochs[len(epochs)-1] + 1
		}
		if len(ids) > 0 {
			w.Observed = ids[len(ids)-1]
		}
		body, err := json.Marshal(w)
		if err != nil {
			return nil, err
		}
		err = r.st.PutIfAbsent(ctx, r.writerKey(w.Epoch), body)
		if err == nil {
			r.fence.putWriter(w)
			return w, nil
		}
		if !errors.Is(err, store.ErrExists) || attempt >= 100 {
			return nil, fmt.Errorf("take writer epoch %d of %s: %w", w.Epoch, r, err)
		}
		// Someone else took this number between our listing and our write.
	}
}

// CheckWriter confirms that w (read back from a workspace file) is the
// session's record of its epoch: the object exists and holds the same writer.
// A copied or forged file fails; the caller then takes a new epoch.
func (r *Repo) CheckWriter(ctx context.Context, w *Writer) error {
	if w.Namespace != r.Namespace || w.Session != r.Session {
		return fmt.Errorf("%w: it is for session %s/%s, not %s/%s", ErrNotThisWriter, printable(w.Namespace, 63), printable(w.Session, 63), r.Namespace, r.Session)
	}
	if w.Epoch == 0 {
		return fmt.Errorf("%w: it has no epoch", ErrNotThisWriter)
	}
	got, err := r.LoadWriter(ctx, w.Epoch)
	var ce *CorruptError
	if errors.Is(err, store.ErrNotFound) || errors.As(err, &ce) {
		return fmt.Errorf("%w: %v", ErrNotThisWriter, err)
	}
	if err != nil {
		return err
	}
	if !got.sameAs(w) {
		return fmt.Errorf("%w: writer epoch %d of %s belongs to writer %s on host %s, not to %s", ErrNotThisWriter, w.Epoch, r, got.ID, printable(got.Host, 64), printable(w.ID, 32))
	}
	return nil
}

// ErrNotThisWriter says a writer record is not the session's record of its
// epoch (CheckWriter): it was copied from elsewhere, or the store lost it.
var ErrNotThisWriter = errors.New("the writer record is not this session's")

// JoinNewest returns the session's newest epoch, for a one-off save that
// must not take the session over from a running sync (`snapshot save`), or
// nil when no epoch was ever taken.
func JoinNewest(ctx context.Context, r *Repo) (*Writer, error) {
	epochs, err := r.Epochs(ctx)
	if err != nil || len(epochs) == 0 {
		return nil, err
	}
	return r.LoadWriter(ctx, epochs[len(epochs)-1])
}

// checkFence returns a FencedError when an epoch newer than w's exists, and
// the epochs it listed.
func (r *Repo) checkFence(ctx context.Context, w *Writer) ([]uint64, error) {
	epochs, err := r.Epochs(ctx)
	if err != nil {
		return nil, err
	}
	if len(epochs) == 0 || epochs[len(epochs)-1] <= w.Epoch {
		return epochs, nil
	}
	newest := epochs[len(epochs)-1]
	fe := &FencedError{Session: r.Namespace + "/" + r.Session, Own: w, By: &Writer{Epoch: newest}}
	if by, err := r.LoadWriter(ctx, newest); err == nil {
		fe.By = by
	}
	return epochs, fe
}

// readHead returns the writer of snapshot id, reading only its manifest.
// nil, nil: the manifest is gone (pruned) or unreadable; fencing then leaves
// it to whatever reads it next, which reports it.
func (r *Repo) readHead(ctx context.Context, id string) (*manifestHead, error) {
	if h := r.fence.head(id); h != nil {
		return h, nil
	}
	obj, err := r.st.Get(ctx, r.manifestKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read snapshot %s of %s: %w", id, r, err)
	}
	data, err := decodeManifest(obj)
	if err != nil {
		return nil, nil
	}
	var h manifestHead
	if json.Unmarshal(data, &h) != nil || h.ID != id {
		return nil, nil
	}
	r.fence.putHead(&h)
	return &h, nil
}

// Staleness says why a snapshot is stale: written by epoch Epoch after epoch
// FencedBy, newer, had taken the session over.
type Staleness struct {
	Epoch    uint64 `json:"epoch"`
	FencedBy uint64 `json:"fencedBy"`
}

func (s *Staleness) String() string {
	return fmt.Sprintf("stale writer (epoch %d, fenced by epoch %d)", s.Epoch, s.FencedBy)
}

// staleRule holds the epochs of a session and reads their objects as needed.
type staleRule struct {
	r      *Repo
	epochs []uint64
}

func (r *Repo) staleRule(ctx context.Context) (*staleRule, error) {
	epochs, err := r.Epochs(ctx)
	if err != nil {
		return nil, err
	}
	return &staleRule{r: r, epochs: epochs}, nil
}

// of returns why snapshot id, written by epoch e, is stale, or nil: the
// oldest epoch E > e whose Observed is older than id. An epoch object that
// cannot be decoded counts as not there (its listing still fences).
func (s *staleRule) of(ctx context.Context, id string, e uint64) (*Staleness, error) {
	i := sort.Search(len(s.epochs), func(i int) bool { return s.epochs[i] > e })
	for _, E := range s.epochs[i:] {
		w, err := s.r.LoadWriter(ctx, E)
		var ce *CorruptError
		if errors.As(err, &ce) || errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if w.Observed < id {
			return &Staleness{Epoch: e, FencedBy: E}, nil
		}
	}
	return nil, nil
}

// Stale returns, for the snapshots among ids that are stale, why. It reads the
// manifest of each snapshot once per process and the epoch objects newer than
// each snapshot's epoch.
func (r *Repo) Stale(ctx context.Context, ids []string) (map[string]*Staleness, error) {
	rule, err := r.staleRule(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]*Staleness{}
	if len(rule.epochs) == 0 {
		return out, nil // no writer ever took an epoch: nothing can be stale
	}
	for _, id := range ids {
		h, err := r.readHead(ctx, id)
		if err != nil {
			return nil, err
		}
		if h == nil {
			continue
		}
		st, err := rule.of(ctx, id, h.Epoch)
		if err != nil {
			return nil, err
		}
		if st != nil {
			out[id] = st
		}
	}
	return out, nil
}

// current returns the newest of ids (sorted, oldest first) that is not
// stale, or "" when there is none. It reads manifests from the newest down
// and usually stops at the first: a snapshot of the newest epoch cannot be
// stale.
//
// epochs, when not nil, are the session's epochs as the caller listed them
// (see Saver.checkFence); nil: current lists them.
func (r *Repo) current(ctx context.Context, ids []string, epochs []uint64) (string, error) {
	if len(ids) == 0 {
		return "", nil
	}
	rule := &staleRule{r: r, epochs: epochs}
	if epochs == nil {
		var err error
		if rule, err = r.staleRule(ctx); err != nil {
			return "", err
		}
	}
	if len(rule.epochs) == 0 {
		return ids[len(ids)-1], nil
	}
	defer r.fence.keepHeads(ids)
	for i := len(ids) - 1; i >= 0; i-- {
		h, err := r.readHead(ctx, ids[i])
		if err != nil {
			return "", err
		}
		if h == nil {
			return ids[i], nil // unreadable: not ours to judge; its reader reports it
		}
		st, err := rule.of(ctx, ids[i], h.Epoch)
		if err != nil {
			return "", err
		}
		if st == nil {
			return ids[i], nil
		}
	}
	return "", nil
}

// checkFence makes sure the Saver has its writer epoch (taking it at the
// first save) and that no newer epoch exists. Once fenced, always fenced.
// It runs at the start of a save, so that a fenced writer writes nothing,
// and again right before the manifest is written.
//
// It returns the epochs it listed, which the start of a save uses to choose
// its parent (current) instead of listing them again; nil when it listed
// none. A Writer that gives nil (JoinNewest of a session that has no epoch)
// has just seen that the session has none: an empty list.
func (s *Saver) checkFence(ctx context.Context) ([]uint64, error) {
	if s.fenced != nil {
		return nil, s.fenced
	}
	if s.opts.Writer == nil {
		return nil, nil
	}
	if s.writer == nil {
		w, err := s.opts.Writer(ctx)
		if err != nil {
			return nil, fmt.Errorf("save %s: writer epoch: %w", s.repo, err)
		}
		if w == nil {
			return []uint64{}, nil // no epoch to save as (JoinNewest of a session without any)
		}
		s.writer = w
	}
	epochs, err := s.repo.checkFence(ctx, s.writer)
	var fe *FencedError
	if errors.As(err, &fe) {
		s.fenced = fe
	}
	if err != nil && fe == nil {
		return nil, fmt.Errorf("save %s: check writer epoch: %w", s.repo, err)
	}
	return epochs, err
}

// Writer returns the epoch the Saver saves as (nil before its first save, or
// without fencing).
func (s *Saver) Writer() *Writer { return s.writer }

func (s *Saver) writerID() string {
	if s.writer == nil {
		return ""
	}
	return s.writer.ID
}

func (s *Saver) epoch() uint64 {
	if s.writer == nil {
		return 0
	}
	return s.writer.Epoch
}
