package local

import (
	"fmt"
	"os/exec"
	"sync"
	"time"
)

const defaultWatchdogInterval = 50 * time.Millisecond

// watchdog enforces the limit where no cgroup is writable: it sums the RSS
// of the runner's process tree (its session, every descendant, and every
// process once seen in it: see tree) and kills the whole tree when the sum
// passes the limit. It is weaker than the
// kernel: an allocation faster than one poll can overshoot, and memory is
// not refused, only punished; that is why it is announced at start.
type watchdog struct {
	interval time.Duration

	mu    sync.Mutex
	limit int64
	peak  int64
	tree  *tree
	latch oomLatch
}

func newWatchdog(limit int64, interval time.Duration) *watchdog {
	return &watchdog{limit: limit, interval: interval}
}

func (w *watchdog) Mode() string { return ModeWatchdog }

func (w *watchdog) Describe() string {
	return fmt.Sprintf("memory limit %s enforced by tether's RSS watchdog (every %s over the runner's process tree): no memory cgroup is writable here, so the kernel does not enforce it and a very fast allocation can overshoot before it is killed",
		FormatSize(w.Limit()), w.interval)
}

func (w *watchdog) Prepare(*exec.Cmd) (func(), error) { return func() {}, nil }

func (w *watchdog) SetLimit(b int64) error {
	w.mu.Lock()
	w.limit = b
	w.mu.Unlock()
	return nil
}

func (w *watchdog) Limit() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.limit
}

func (w *watchdog) Peak() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.peak
}

// rss sums the resident memory of the group.
func rss(ps []procStat) int64 {
	var sum int64
	for _, p := range ps {
		sum += p.rssPages
	}
	return sum * pageSize()
}

func (w *watchdog) Begin(pid int) <-chan OOMEvent {
	tr := newTree(pid)
	w.mu.Lock()
	w.tree, w.peak = tr, 0
	w.mu.Unlock()
	ch := w.latch.begin()
	done := w.latch.done
	w.latch.wg.Add(1)
	go func() {
		defer w.latch.wg.Done()
		t := time.NewTicker(w.interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			used := rss(tr.members())
			w.mu.Lock()
			if used > w.peak {
				w.peak = used
			}
			limit := w.limit
			w.mu.Unlock()
			if used > limit {
				at := time.Now()
				tr.kill(5 * time.Second)
				w.latch.fire(OOMEvent{By: ModeWatchdog, At: at, KilledAt: time.Now(), Usage: used, Limit: limit,
					Detail: fmt.Sprintf("RSS of the runner and its descendants %s > limit %s", FormatSize(used), FormatSize(limit))})
				return
			}
		}
	}()
	return ch
}

func (w *watchdog) End() (*OOMEvent, error) {
	ev := w.latch.stop()
	w.mu.Lock()
	tr := w.tree
	w.mu.Unlock()
	if tr == nil {
		return ev, nil
	}
	return ev, tr.kill(5 * time.Second)
}

func (w *watchdog) Close() error {
	_, err := w.End()
	return err
}
