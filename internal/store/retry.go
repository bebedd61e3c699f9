package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"sync"
	"syscall"
	"time"

	"gocloud.dev/gcerrors"
)

// RetryOptions bounds the retries of WithRetry. Zero fields take the defaults
// noted on each.
type RetryOptions struct {
	// MaxAttempts is the number of tries per call, the first included.
	// Default 6.
	MaxAttempts int
	// InitialDelay is the wait before the first retry; it doubles on each
	// retry up to MaxDelay. Each wait is drawn at random from its upper half
	// (jitter), so many clients that failed together do not retry together.
	// Defaults 200ms and 5s.
	InitialDelay, MaxDelay time.Duration
	// MaxElapsed is the time after which no new attempt starts. Default 1m.
	MaxElapsed time.Duration
	// AttemptTimeout, when set, bounds each attempt; an attempt that hits it
	// is retried, which turns a hung connection into a retry instead of a
	// hang. Default: no bound (the caller's context still applies).
	AttemptTimeout time.Duration
	// OnRetry, when set, is called before each wait, for logging.
	OnRetry func(op, key string, attempt int, err error, wait time.Duration)
	// Seed, when not 0, makes the jitter reproducible (tests).
	Seed uint64
}

func (o RetryOptions) withDefaults() RetryOptions {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 6
	}
	if o.InitialDelay <= 0 {
		o.InitialDelay = 200 * time.Millisecond
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = 5 * time.Second
	}
	if o.MaxDelay < o.InitialDelay {
		o.MaxDelay = o.InitialDelay
	}
	if o.MaxElapsed <= 0 {
		o.MaxElapsed = time.Minute
	}
	return o
}

// WithRetry returns a Store that retries the calls of s that fail with a
// transient error (see IsTransient), with exponential backoff and jitter,
// within opts' bounds on attempts and total time. A call that gives up
// returns the last error, which says how many attempts were made.
//
// Retrying is safe for every method: Put and Delete are idempotent, reads
// have no effect, and PutIfAbsent handles the ambiguous case where an attempt
// did write the object but its answer was lost: the retry then finds the key
// taken, reads the object back, and reports success if it holds exactly the
// bytes being written. (So a concurrent writer of identical bytes can also
// make PutIfAbsent succeed; for content-addressed keys that is the point.)
func WithRetry(s Store, opts RetryOptions) Store {
	o := opts.withDefaults()
	seed := o.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	return &retryStore{s: s, opts: o, rng: rand.New(rand.NewPCG(seed, seed>>1|1))}
}

type retryStore struct {
	s    Store
	opts RetryOptions
	mu   sync.Mutex
	rng  *rand.Rand
}

func (r *retryStore) String() string { return r.s.String() }
func (r *retryStore) Close() error   { return r.s.Close() }

// wait returns the jittered delay before retry number n (1-based).
func (r *retryStore) wait(n int) time.Duration {
	d := r.opts.InitialDelay
	for i := 1; i < n && d < r.opts.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, r.opts.MaxDelay)
	r.mu.Lock()
	defer r.mu.Unlock()
	return d/2 + time.Duration(r.rng.Int64N(int64(d/2)+1))
}

func (r *retryStore) do(ctx context.Context, op, key string, f func(ctx context.Context) error) error {
	start := time.Now()
	for attempt := 1; ; attempt++ {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if r.opts.AttemptTimeout > 0 {
			actx, cancel = context.WithTimeout(ctx, r.opts.AttemptTimeout)
		}
		err := f(actx)
		attemptTimedOut := ctx.Err() == nil && actx.Err() != nil
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || !(attemptTimedOut || IsTransient(err)) {
			return err
		}
		if attempt >= r.opts.MaxAttempts {
			return fmt.Errorf("%w (gave up after %d attempts in %s)", err, attempt, time.Since(start).Round(time.Millisecond))
		}
		w := r.wait(attempt)
		if time.Since(start)+w > r.opts.MaxElapsed {
			return fmt.Errorf("%w (gave up after %d attempts in %s, the retry time limit is %s)", err, attempt, time.Since(start).Round(time.Millisecond), r.opts.MaxElapsed)
		}
		if r.opts.OnRetry != nil {
			r.opts.OnRetry(op, key, attempt, err, w)
		}
		t := time.NewTimer(w)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (retry stopped: %w)", err, ctx.Err())
		case <-t.C:
		}
	}
}

func (r *retryStore) Put(ctx context.Context, key string, data []byte) error {
	return r.do(ctx, "put", key, func(ctx context.Context) error { return r.s.Put(ctx, key, data) })
}

func (r *retryStore) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	return r.putIfAbsent(ctx, key, data, r.s.PutIfAbsent)
}

// PutIfAbsentUnsynced retries like PutIfAbsent; it is unsynced only when the
// wrapped store is an UnsyncedWriter.
func (r *retryStore) PutIfAbsentUnsynced(ctx context.Context, key string, data []byte) error {
	put := r.s.PutIfAbsent
	if u, ok := r.s.(UnsyncedWriter); ok {
		put = u.PutIfAbsentUnsynced
	}
	return r.putIfAbsent(ctx, key, data, put)
}

// Sync retries the wrapped store's Sync, if it has one.
func (r *retryStore) Sync(ctx context.Context) error {
	return r.do(ctx, "sync", "", func(ctx context.Context) error { return Sync(ctx, r.s) })
}

func (r *retryStore) putIfAbsent(ctx context.Context, key string, data []byte, put func(context.Context, string, []byte) error) error {
	failedBefore := false
	return r.do(ctx, "put-if-absent", key, func(ctx context.Context) error {
		err := put(ctx, key, data)
		if err == nil || !errors.Is(err, ErrExists) {
			if err != nil {
				failedBefore = true
			}
			return err
		}
		if !failedBefore {
			return err
		}
		// The object exists, and an earlier attempt of ours failed in a way
		// that leaves open whether it wrote: look at what is there.
		got, gerr := r.s.Get(ctx, key)
		if gerr != nil {
			return gerr
		}
		if bytes.Equal(got, data) {
			return nil
		}
		return fmt.Errorf("%w; an earlier attempt failed midway and the object now holds different bytes (%d, want %d): "+
			"another writer won, or the store kept a torn write", err, len(got), len(data))
	})
}

func (r *retryStore) Get(ctx context.Context, key string) (data []byte, err error) {
	err = r.do(ctx, "get", key, func(ctx context.Context) error {
		data, err = r.s.Get(ctx, key)
		return err
	})
	return data, err
}

func (r *retryStore) Stat(ctx context.Context, key string) (info ObjectInfo, err error) {
	err = r.do(ctx, "stat", key, func(ctx context.Context) error {
		info, err = r.s.Stat(ctx, key)
		return err
	})
	return info, err
}

// List retries only while nothing has been handed to fn: restarting a listing
// halfway would call fn twice for the same objects.
func (r *retryStore) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	delivered := false
	var fnErr error
	err := r.do(ctx, "list", prefix, func(ctx context.Context) error {
		err := r.s.List(ctx, prefix, func(oi ObjectInfo) error {
			delivered = true
			if err := fn(oi); err != nil {
				fnErr = err
				return err
			}
			return nil
		})
		if err != nil && (delivered || fnErr != nil) {
			return permanent(err)
		}
		return err
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}

func (r *retryStore) Delete(ctx context.Context, key string) error {
	return r.do(ctx, "delete", key, func(ctx context.Context) error { return r.s.Delete(ctx, key) })
}

// IsTransient reports whether err may go away if the call is simply tried
// again: network failures, server errors, throttling, timeouts of one request.
// It is false for answers that a retry would only repeat: ErrNotFound,
// ErrExists, ErrInvalidKey, cancellation of the caller's context, permission
// and authentication failures, invalid arguments, a full or read-only disk.
// An error that has a Transient() bool method anywhere in its chain is
// classified by that method (the fault injector's errors say true).
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var t interface{ Transient() bool }
	if errors.As(err, &t) {
		return t.Transient()
	}
	for _, target := range []error{
		ErrNotFound, ErrExists, ErrInvalidKey,
		context.Canceled, context.DeadlineExceeded,
		fs.ErrPermission, syscall.ENOSPC, syscall.EROFS, syscall.EDQUOT,
		syscall.ENOTDIR, syscall.EISDIR,
	} {
		if errors.Is(err, target) {
			return false
		}
	}
	switch gcerrors.Code(err) {
	case gcerrors.NotFound, gcerrors.AlreadyExists, gcerrors.FailedPrecondition,
		gcerrors.PermissionDenied, gcerrors.InvalidArgument, gcerrors.Unimplemented,
		gcerrors.Canceled:
		return false
	}
	// An HTTP answer from an S3 server: 4xx means the request itself is
	// wrong (bad credentials, missing bucket, bad argument) except for
	// timeouts, conflicting concurrent writes and throttling.
	if code := httpStatus(err); code >= 400 && code < 500 {
		switch code {
		case http.StatusRequestTimeout, http.StatusConflict, http.StatusTooManyRequests:
			return true
		}
		return false
	}
	return true
}
