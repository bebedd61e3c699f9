package local

import (
	"encoding/json"
	"errors"
	"sync/atomic"
	"time"

	"github.com/tether-dev/tether/internal/fsutil"
	"github.com/tether-dev/tether/internal/statesync"
)

// Suspending a session stops its runner gracefully, the way Ctrl-C does,
// has the sync take a snapshot, and keeps everything else (the sync, the
// page, the workspace lock) until the session is resumed or stopped. A
// resumed session starts a new runner life that resumes the conversation,
// as after a restart, but no death is recorded and no restart counted.

// whySuspended is watchLife's reason when the runner stopped for a suspend.
const whySuspended = "suspended"

// ErrNotSuspendable is what Suspend returns while no runner is running
// (starting, restarting after a death, stopping).
var ErrNotSuspendable = errors.New("the session has no running runner to suspend (it is starting, restarting or stopping): try again in a moment")

// ErrSuspended and ErrNotSuspended refuse a request the session's state
// makes meaningless.
var (
	ErrSuspended    = errors.New("the session is already suspended")
	ErrNotSuspended = errors.New("the session is not suspended")
)

// control is what Suspend and Resume, called from other goroutines, share
// with the supervisor's loop.
type control struct {
	live      atomic.Bool // a runner life is being watched
	suspended atomic.Bool
	suspendC  chan struct{}
	resumeC   chan struct{}
}

func newControl() control {
	return control{suspendC: make(chan struct{}, 1), resumeC: make(chan struct{}, 1)}
}

// Suspend asks the supervisor to stop the runner and keep the session. It
// returns once asked; the status file says when the session is suspended.
func (s *Supervisor) Suspend() error {
	switch {
	case s.ctl.suspended.Load():
		return ErrSuspended
	case !s.ctl.live.Load():
		return ErrNotSuspendable
	}
	select {
	case s.ctl.suspendC <- struct{}{}:
	default: // asked already
	}
	return nil
}

// Resume starts a suspended session's runner again.
func (s *Supervisor) Resume() error {
	if !s.ctl.suspended.Load() {
		return ErrNotSuspended
	}
	select {
	case s.ctl.resumeC <- struct{}{}:
	default:
	}
	return nil
}

// drain forgets a request made for an earlier state.
func drain(c chan struct{}) {
	select {
	case <-c:
	default:
	}
}

// requestSuspendSnapshot asks the sync for a snapshot of the suspended
// session, as requestSnapshot does after a death.
func (s *Supervisor) requestSuspendSnapshot() {
	data, _ := json.Marshal(map[string]any{"reason": "suspended", "time": time.Now().UTC()})
	if err := fsutil.WriteFileAtomic(s.ws(statesync.SnapshotRequestFile), append(data, '\n'), 0o644); err != nil {
		s.printf("warning: cannot ask the sync for a snapshot: %v", err)
	}
}
