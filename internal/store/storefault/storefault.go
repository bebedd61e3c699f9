package storefault

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path"
	"strings"
	"sync"

	"github.com/tether-dev/tether/internal/store"
)

// Op names a Store method.
type Op string

// The operations a Rule can select.
const (
	Any         Op = ""
	Put         Op = "put"
	PutIfAbsent Op = "put-if-absent"
	Get         Op = "get"
	Stat        Op = "stat"
	List        Op = "list"
	Delete      Op = "delete"
)

// Fault is what happens to a call a rule hits.
type Fault int

const (
	// Fail fails the call with a transient error before it reaches the store.
	Fail Fault = iota
	// Stall blocks the call until Release is called (then it goes on to the
	// store as usual) or its context ends (then it fails with the context's
	// error, and the store never sees it).
	Stall
	// DropWrite fails a write as if the connection dropped halfway through
	// the upload, on a backend that keeps writes atomic: nothing is stored,
	// a transient error is returned. On other calls it acts like Fail.
	DropWrite
	// TornWrite fails a write as if the connection dropped halfway through,
	// on a backend that does NOT keep writes atomic: the first half of the
	// data is stored under the key, and a transient error is returned. It
	// lets a test check that a truncated object is caught by hash
	// verification upstream. On other calls it acts like Fail.
	TornWrite
	// TruncateSilently stores the first half of a write's data and reports
	// success: the worst storage bug, which only verification can catch. On
	// other calls it acts like Fail.
	TruncateSilently
	// LostAck lets a write or delete reach the store in full and then
	// returns a transient error, as when the answer is lost on the way back;
	// this is the ambiguous case retries must handle. On reads it acts like
	// Fail.
	LostAck
	// TruncateRead makes Get return the first half of the object and no
	// error. On other calls it acts like Fail.
	TruncateRead
)

func (f Fault) String() string {
	switch f {
	case Fail:
		return "fail"
	case Stall:
		return "stall"
	case DropWrite:
		return "connection dropped mid-write, nothing stored"
	case TornWrite:
		return "connection dropped mid-write, truncated object stored"
	case TruncateSilently:
		return "truncated object stored, success reported"
	case LostAck:
		return "write done, answer lost"
	case TruncateRead:
		return "truncated read"
	}
	return fmt.Sprintf("fault(%d)", int(f))
}

// Rule selects calls and says which Fault hits them. A call is checked
// against the rules in the order they were added; the first rule that hits
// decides, and calls no rule hits go to the store unchanged.
type Rule struct {
	Op Op // the operation; Any matches all
	// Key is a path.Match pattern for the key ("*" stops at slashes);
	// KeyPrefix matches keys by prefix. Empty matches all. For List, the
	// listing prefix is the key.
	Key, KeyPrefix string
	// Nth hits only the Nth call (1-based) that matches Op and the key;
	// 0 considers every matching call.
	Nth int
	// Count caps how many calls the rule hits; 0 is no cap.
	Count int
	// Prob, when above 0, hits each considered call with this probability,
	// drawn from the injector's seeded source (so a run is reproducible for
	// a given order of calls).
	Prob  float64
	Fault Fault
}

type rule struct {
	Rule
	seen, hits int
}

// Error is the error an injected fault returns. It is transient, so
// store.IsTransient and store.WithRetry treat it like a network failure.
type Error struct {
	Op    Op
	Key   string
	Store string
	Fault Fault
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s %q in store %s: injected fault: %s", e.Op, e.Key, e.Store, e.Fault)
}

// Transient reports true: injected faults stand for failures a retry can fix.
func (e *Error) Transient() bool { return true }

// Injector is a store.Store that passes calls to the store it wraps, except
// those its rules hit. It is safe for concurrent use.
type Injector struct {
	s store.Store

	mu      sync.Mutex
	rng     *rand.Rand
	rules   []*rule
	calls   map[Op]int
	hits    int
	stalled int
	release chan struct{} // closed by Release
	changed chan struct{} // closed and replaced whenever stalled changes
}

// New wraps s. seed makes Prob rules reproducible.
func New(s store.Store, seed uint64) *Injector {
	return &Injector{
		s:       s,
		rng:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		calls:   map[Op]int{},
		release: make(chan struct{}),
		changed: make(chan struct{}),
	}
}

// Add appends rules.
func (f *Injector) Add(rules ...Rule) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range rules {
		f.rules = append(f.rules, &rule{Rule: r})
	}
}

// Clear removes all rules; calls already stalled stay stalled until Release.
func (f *Injector) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = nil
}

// Release lets every currently stalled call go on to the store.
func (f *Injector) Release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.release)
	f.release = make(chan struct{})
}

// WaitStalled waits until at least n calls are stalled at once.
func (f *Injector) WaitStalled(ctx context.Context, n int) error {
	for {
		f.mu.Lock()
		stalled, changed := f.stalled, f.changed
		f.mu.Unlock()
		if stalled >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d stalled calls, have %d: %w", n, stalled, ctx.Err())
		case <-changed:
		}
	}
}

// Calls returns how many calls of op were made (Any: all calls), hit or not.
func (f *Injector) Calls(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if op == Any {
		n := 0
		for _, c := range f.calls {
			n += c
		}
		return n
	}
	return f.calls[op]
}

// Hits returns how many faults were injected.
func (f *Injector) Hits() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits
}

// decide records a call and returns the fault to inject, if any. Every rule
// counts the calls that match it, also those an earlier rule hit, so Nth
// always means the Nth matching call.
func (f *Injector) decide(op Op, key string) (Fault, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	var matching []*rule
	for _, r := range f.rules {
		if r.matches(op, key) {
			r.seen++
			matching = append(matching, r)
		}
	}
	for _, r := range matching {
		if r.Nth != 0 && r.seen != r.Nth {
			continue
		}
		if r.Count != 0 && r.hits >= r.Count {
			continue
		}
		if r.Prob > 0 && f.rng.Float64() >= r.Prob {
			continue
		}
		r.hits++
		f.hits++
		return r.Fault, true
	}
	return 0, false
}

func (r *rule) matches(op Op, key string) bool {
	if r.Op != Any && r.Op != op {
		return false
	}
	if r.Key != "" {
		if ok, _ := path.Match(r.Key, key); !ok {
			return false
		}
	}
	return r.KeyPrefix == "" || strings.HasPrefix(key, r.KeyPrefix)
}

func (f *Injector) err(op Op, key string, fault Fault) error {
	return &Error{Op: op, Key: key, Store: f.s.String(), Fault: fault}
}

// stall blocks until Release or ctx ends.
func (f *Injector) stall(ctx context.Context, op Op, key string) error {
	f.mu.Lock()
	rel := f.release
	f.stalled++
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.stalled--
		close(f.changed)
		f.changed = make(chan struct{})
		f.mu.Unlock()
	}()
	select {
	case <-rel:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s %q in store %s: stalled by fault injection until the context ended: %w", op, key, f.s.String(), ctx.Err())
	}
}

// pass handles the faults that do not depend on the operation and reports
// whether the call should go on to the store.
func (f *Injector) pass(ctx context.Context, op Op, key string) (Fault, bool, error) {
	fault, hit := f.decide(op, key)
	if !hit {
		return 0, true, nil
	}
	if fault == Stall {
		if err := f.stall(ctx, op, key); err != nil {
			return fault, false, err
		}
		return 0, true, nil
	}
	return fault, false, nil
}

func (f *Injector) String() string { return f.s.String() }
func (f *Injector) Close() error   { return f.s.Close() }

func (f *Injector) Put(ctx context.Context, key string, data []byte) error {
	return f.write(ctx, Put, key, data, f.s.Put)
}

func (f *Injector) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	return f.write(ctx, PutIfAbsent, key, data, f.s.PutIfAbsent)
}

func (f *Injector) write(ctx context.Context, op Op, key string, data []byte, put func(context.Context, string, []byte) error) error {
	fault, ok, err := f.pass(ctx, op, key)
	if err != nil {
		return err
	}
	if ok {
		return put(ctx, key, data)
	}
	switch fault {
	case TornWrite, TruncateSilently:
		if err := put(ctx, key, data[:len(data)/2]); err != nil {
			return err // e.g. ErrExists: the torn write never happened
		}
		if fault == TruncateSilently {
			return nil
		}
	case LostAck:
		if err := put(ctx, key, data); err != nil {
			return err
		}
	}
	return f.err(op, key, fault)
}

func (f *Injector) Get(ctx context.Context, key string) ([]byte, error) {
	fault, ok, err := f.pass(ctx, Get, key)
	if err != nil {
		return nil, err
	}
	if ok {
		return f.s.Get(ctx, key)
	}
	if fault == TruncateRead {
		data, err := f.s.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		return data[:len(data)/2], nil
	}
	return nil, f.err(Get, key, fault)
}

func (f *Injector) Stat(ctx context.Context, key string) (store.ObjectInfo, error) {
	fault, ok, err := f.pass(ctx, Stat, key)
	if err != nil {
		return store.ObjectInfo{}, err
	}
	if ok {
		return f.s.Stat(ctx, key)
	}
	return store.ObjectInfo{}, f.err(Stat, key, fault)
}

func (f *Injector) List(ctx context.Context, prefix string, fn func(store.ObjectInfo) error) error {
	fault, ok, err := f.pass(ctx, List, prefix)
	if err != nil {
		return err
	}
	if ok {
		return f.s.List(ctx, prefix, fn)
	}
	return f.err(List, prefix, fault)
}

func (f *Injector) Delete(ctx context.Context, key string) error {
	fault, ok, err := f.pass(ctx, Delete, key)
	if err != nil {
		return err
	}
	if ok {
		return f.s.Delete(ctx, key)
	}
	if fault == LostAck {
		if err := f.s.Delete(ctx, key); err != nil {
			return err
		}
	}
	return f.err(Delete, key, fault)
}

// IsInjected reports whether err came from a fault this package injected.
func IsInjected(err error) bool {
	var e *Error
	return errors.As(err, &e)
}
