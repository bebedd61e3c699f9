package local

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Jail modes.
const (
	ModeCgroupV2 = "cgroup-v2"
	ModeCgroupV1 = "cgroup-v1"
	ModeWatchdog = "watchdog"
)

// Mode choices for Config.MemoryMode.
const (
	MemoryAuto     = "auto"     // a cgroup when one is writable, else the watchdog
	MemoryCgroup   = "cgroup"   // a cgroup or fail
	MemoryWatchdog = "watchdog" // the watchdog even where a cgroup would work (tests)
)

// OOMEvent is one out-of-memory kill of the runner's group.
type OOMEvent struct {
	// By is ModeCgroupV1/V2 (the kernel killed a process) or ModeWatchdog.
	By string
	// At is when the supervisor noticed.
	At time.Time
	// Detail says what was seen, e.g. "memory.oom_control oom_kill 0 -> 1".
	Detail string
	// Usage is the group's memory use as last seen (the watchdog's sum of
	// RSS, or the cgroup's peak), Limit the limit in force.
	Usage, Limit int64
	// KilledAt is when the whole group was dead after the kill.
	KilledAt time.Time
}

// Jail confines one process and everything it starts, like a container: a
// memory limit over the whole group, and when it is exceeded every process of
// the group dies, not just the one the kernel picked. One Jail serves every
// life of the runner; Begin starts a life.
type Jail interface {
	// Mode is one of ModeCgroupV2, ModeCgroupV1, ModeWatchdog.
	Mode() string
	// Describe is the line announced at start.
	Describe() string
	// Prepare changes cmd, before Start, so that the child is inside the
	// jail from its first instruction. The returned func runs after Start.
	Prepare(cmd *exec.Cmd) (after func(), err error)
	// Begin starts watching a new life whose leader is pid (already
	// started with Prepare). OOM events of that life arrive on the channel,
	// at most one, after the whole group was killed.
	Begin(pid int) <-chan OOMEvent
	// End stops watching the current life, kills whatever of the group is
	// left (stray tool processes) and returns the OOM event if one was
	// detected, also one the watcher had not delivered yet.
	End() (*OOMEvent, error)
	// SetLimit changes the limit; it applies to the current life at once.
	SetLimit(bytes int64) error
	Limit() int64
	// Peak is the highest memory use seen in the current life, 0 if unknown.
	Peak() int64
	// Close kills what is left and removes the jail (the cgroup directory).
	Close() error
}

// NewJail builds the jail for mode (MemoryAuto, MemoryCgroup, MemoryWatchdog)
// with the given limit; name becomes part of the cgroup's directory name.
// With MemoryAuto, reasons says why no cgroup could be used.
func NewJail(mode, name string, limit int64) (j Jail, reasons []string, err error) {
	switch mode {
	case MemoryAuto, MemoryCgroup, "":
		cg, why := newCgroupJail(name, limit)
		if cg != nil {
			return cg, nil, nil
		}
		if mode == MemoryCgroup {
			return nil, why, fmt.Errorf("no writable memory cgroup: %v", errors.Join(errsOf(why)...))
		}
		return newWatchdog(limit, defaultWatchdogInterval), why, nil
	case MemoryWatchdog:
		return newWatchdog(limit, defaultWatchdogInterval), []string{"the watchdog was asked for"}, nil
	}
	return nil, nil, fmt.Errorf("memory mode %q: use auto, cgroup or watchdog", mode)
}

func errsOf(ss []string) []error {
	var out []error
	for _, s := range ss {
		out = append(out, errors.New(s))
	}
	return out
}

// killSession SIGKILLs every process whose session id is sid (the runner
// is started with Setsid, so its whole tree shares its session, even the
// processes that made their own process group and orphans adopted by init),
// until none is left or wait elapses.
func killSession(sid int, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		pids, err := sessionPIDs(sid)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v of session %d survive SIGKILL", pids, sid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// oomLatch holds at most one OOM event per life: the watcher stores it, End
// takes it, the channel delivers it once.
type oomLatch struct {
	mu    sync.Mutex
	ev    *OOMEvent
	ch    chan OOMEvent
	done  chan struct{}
	wg    sync.WaitGroup
	alive bool
}

func (l *oomLatch) begin() <-chan OOMEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ev, l.ch, l.done, l.alive = nil, make(chan OOMEvent, 1), make(chan struct{}), true
	return l.ch
}

func (l *oomLatch) fire(ev OOMEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ev != nil || !l.alive {
		return
	}
	l.ev = &ev
	l.ch <- ev
}

// stop ends the watcher goroutine and returns the event of the life.
func (l *oomLatch) stop() *OOMEvent {
	l.mu.Lock()
	if l.alive {
		close(l.done)
	}
	l.mu.Unlock()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.alive = false
	return l.ev
}

func pageSize() int64 { return int64(os.Getpagesize()) }
