package statesync

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/tether-dev/tether/internal/snapshot"
)

// The sync loop is a small state machine. Every turn of the loop asks decide
// what to do now, given what is pending, the record of failed saves and the
// time; decide is a pure function, so the whole policy is tested with plain
// times (loop_test.go) and no sleeping.
//
//	idle ──change──▶ debouncing ──quiet or max-delay──▶ saving ──ok──▶ idle
//	                                                      │
//	                                                    failed
//	                                                      ▼
//	                           saving ◀──retryAt passed── backing off
//
// Backing off is a deadline (retryAt), not a wait to add: once the deadline
// has passed decide can no longer answer "back off", so a failed save is
// always followed by another attempt within the backoff cap. (The loop this
// replaces raised every wait to the last backoff while a retry was pending,
// and only a success reset it: after one failure it never saved again.)
// On cancellation the loop goes to final: one last snapshot of everything,
// retried within FinalBudget.

// phase is what the loop does next.
type phase int

const (
	phaseIdle       phase = iota // nothing pending: wait for an event or the rescan tick
	phaseDebouncing              // changes pending: wait for quiet, at most MaxDelay
	phaseSaving                  // save now
	phaseBackingOff              // the last save failed: wait until retryAt
	phaseFinal                   // the context ended: the final snapshot
)

func (p phase) String() string {
	return [...]string{"idle", "debouncing", "saving", "backing-off", "final"}[p]
}

// Backoff after failed saves: 1 s, doubling, at most 30 s, each drawn from
// the upper half of its interval so that many sidecars that failed together
// (one store outage) do not all come back at the same instant.
const (
	backoffInitial = time.Second
	backoffMax     = 30 * time.Second
)

// backoff is the wait after the n-th failure in a row (n >= 1), before jitter.
func backoff(n int) time.Duration {
	d := backoffInitial
	for i := 1; i < n && d < backoffMax; i++ {
		d *= 2
	}
	return min(d, backoffMax)
}

// jitter draws a wait from [d/2, d].
func jitter(d time.Duration, r *rand.Rand) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + time.Duration(r.Int64N(int64(d/2)+1))
}

// failures is the record of the current run of failed saves (zero: the last
// save succeeded, or none failed yet).
type failures struct {
	count   int       // failed saves in a row
	since   time.Time // when the first of them failed
	retryAt time.Time // no save before this
	kind    string    // errorKind of the last one
	last    error
}

// failed records one more failed save at now and sets the next retry.
func (f *failures) failed(err error, now time.Time, r *rand.Rand) time.Duration {
	if f.count == 0 {
		f.since = now
	}
	f.count++
	f.last, f.kind = err, errorKind(err)
	wait := jitter(backoff(f.count), r)
	f.retryAt = now.Add(wait)
	return wait
}

// decide is the loop's policy: what to do at now, and how long to wait first
// when the answer is to wait. It never answers phaseBackingOff once retryAt
// has passed, and it waits at most max(MaxDelay, backoffMax) while anything
// is pending.
func decide(p *pendingState, f *failures, cfg *Config, now time.Time) (phase, time.Duration) {
	if !p.dirty() {
		return phaseIdle, 0
	}
	if f.count > 0 && now.Before(f.retryAt) {
		return phaseBackingOff, f.retryAt.Sub(now)
	}
	if p.urgent || ((p.rescan || p.full) && p.last.IsZero()) {
		return phaseSaving, 0
	}
	at := p.last.Add(cfg.Debounce)
	if limit := p.since.Add(cfg.MaxDelay); limit.Before(at) {
		at = limit
	}
	if wait := at.Sub(now); wait > 0 {
		return phaseDebouncing, wait
	}
	return phaseSaving, 0
}

// Kinds of save failure, for /healthz, /metrics and the log: what an
// operator looks at first.
const (
	kindUnavailable = "store-unavailable" // network, 5xx, timeouts: the store did not answer
	kindDenied      = "permission-denied" // the store or the workspace refused access
	kindFull        = "disk-full"         // no space left (the store's disk, the workspace's or the cache's)
	kindCorrupt     = "corrupt-data"      // an object read back did not verify
	kindOther       = "other"
)

// errorKind classifies a save error for people; it decides nothing.
func errorKind(err error) string {
	var corrupt *snapshot.CorruptError
	var netErr net.Error
	var transient interface{ Transient() bool } // storefault's and the store's own marks
	msg := strings.ToLower(err.Error())
	switch {
	case errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		strings.Contains(msg, "no space left") || strings.Contains(msg, "storage full") ||
		strings.Contains(msg, "insufficient storage") || strings.Contains(msg, "storagefull"):
		return kindFull
	case errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EROFS) ||
		strings.Contains(msg, "accessdenied") || strings.Contains(msg, "access denied") || strings.Contains(msg, "forbidden"):
		return kindDenied
	case errors.As(err, &corrupt):
		return kindCorrupt
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) || errors.As(err, &transient) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		strings.Contains(msg, "connection refused") || strings.Contains(msg, "status code: 5") ||
		strings.Contains(msg, "statuscode: 5") || strings.Contains(msg, "serviceunavailable") || strings.Contains(msg, "internalerror"):
		return kindUnavailable
	}
	return kindOther
}

// stopsSync is implemented by save errors after which this sync must not
// save again (the session was taken over by a newer writer): the loop ends
// at once, without a final snapshot, and Run returns the error.
type stopsSync interface{ StopsSync() bool }

func isStop(err error) bool {
	var s stopsSync
	return fenced(err) != nil || (errors.As(err, &s) && s.StopsSync())
}

// clock is the loop's view of time, replaced in tests.
type clock interface {
	Now() time.Time
	// NewTimer returns a channel that receives once, d from now, and a stop
	// function.
	NewTimer(d time.Duration) (<-chan time.Time, func())
	// NewTicker returns a channel that receives every d, and a stop function.
	NewTicker(d time.Duration) (<-chan time.Time, func())
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) NewTimer(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}
func (realClock) NewTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}
