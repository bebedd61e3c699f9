package statesync

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/snapshot"
	"github.com/tether-dev/tether/internal/store"
	"github.com/tether-dev/tether/internal/store/storefault"
	"github.com/tether-dev/tether/internal/store/storetest"
)

var t0 = time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)

func TestDecide(t *testing.T) {
	cfg := testConfig("/ws")
	cfg.Debounce, cfg.MaxDelay = 300*time.Millisecond, 1500*time.Millisecond
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	failed := failures{count: 2, since: t0.Add(-time.Minute), retryAt: t0.Add(2 * time.Second)}
	for _, tc := range []struct {
		name  string
		p     pendingState
		f     failures
		now   time.Time
		phase phase
		wait  time.Duration
	}{
		{"clean", pendingState{}, failures{}, t0, phaseIdle, 0},
		{"clean while failing: nothing to save", pendingState{}, failed, t0, phaseIdle, 0},
		{"first snapshot at once", pendingState{full: true, since: t0}, failures{}, t0, phaseSaving, 0},
		{"runner asked", pendingState{urgent: true, since: t0, last: t0}, failures{}, t0, phaseSaving, 0},
		{"fresh change waits for quiet", pendingState{since: t0, last: t0}, failures{}, t0.Add(ms(100)), phaseDebouncing, ms(200)},
		{"quiet: save", pendingState{since: t0, last: t0}, failures{}, t0.Add(ms(300)), phaseSaving, 0},
		{"stream of changes: max-delay bounds it", pendingState{since: t0, last: t0.Add(ms(1400))}, failures{}, t0.Add(ms(1450)), phaseDebouncing, ms(50)},
		{"stream of changes: max-delay reached", pendingState{since: t0, last: t0.Add(ms(1490))}, failures{}, t0.Add(ms(1500)), phaseSaving, 0},
		{"backing off", pendingState{since: t0, last: t0, rescan: true}, failed, t0, phaseBackingOff, 2 * time.Second},
		{"backing off beats urgency", pendingState{since: t0, urgent: true}, failed, t0.Add(time.Second), phaseBackingOff, time.Second},
		// The bug this loop replaces: once the retry time has passed, a
		// failure record must not hold the save back any more.
		{"retry time passed: save", pendingState{since: t0, last: t0, rescan: true}, failed, t0.Add(2 * time.Second), phaseSaving, 0},
		{"retry time long passed: save", pendingState{since: t0, last: t0, rescan: true}, failed, t0.Add(time.Hour), phaseSaving, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ph, wait := decide(&tc.p, &tc.f, &cfg, tc.now)
			if ph != tc.phase || wait != tc.wait {
				t.Fatalf("decide = %s after %s, want %s after %s", ph, wait, tc.phase, tc.wait)
			}
		})
	}
}

func TestBackoffSchedule(t *testing.T) {
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30, 30}
	for i, w := range want {
		if got := backoff(i + 1); got != w*time.Second {
			t.Errorf("backoff(%d) = %s, want %s", i+1, got, w*time.Second)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for n := 1; n <= 1000; n++ {
		d := backoff(n%8 + 1)
		if j := jitter(d, r); j < d/2 || j > d {
			t.Fatalf("jitter(%s) = %s, outside [%s, %s]", d, j, d/2, d)
		}
	}
}

// TestNoStallProperty drives decide through random histories of changes,
// failures and successes, and checks the property the loop rests on: while
// anything is pending, a save is never more than the backoff cap (or
// max-delay) away, whatever failed before.
func TestNoStallProperty(t *testing.T) {
	cfg := testConfig("/ws")
	r := rand.New(rand.NewPCG(7, 7))
	for run := 0; run < 200; run++ {
		now := t0
		p := pendingState{full: true, since: now}
		var f failures
		lastAttempt := now
		for step := 0; step < 300; step++ {
			ph, wait := decide(&p, &f, &cfg, now)
			switch ph {
			case phaseIdle:
				now = now.Add(time.Duration(r.Int64N(int64(10 * time.Second))))
				p.since, p.last = now, now
				lastAttempt = now
			case phaseDebouncing, phaseBackingOff:
				if wait <= 0 || wait > max(cfg.MaxDelay, backoffMax) {
					t.Fatalf("run %d step %d: %s for %s", run, step, ph, wait)
				}
				now = now.Add(wait)
			case phaseSaving:
				if gap := now.Sub(lastAttempt); gap > max(cfg.MaxDelay, backoffMax)+cfg.Debounce {
					t.Fatalf("run %d step %d: %s between attempts while changes were pending", run, step, gap)
				}
				lastAttempt = now
				if r.IntN(3) > 0 { // mostly failing: a long outage
					f.failed(errors.New("store down"), now, r)
					p.rescan = true
				} else {
					f = failures{}
					p = pendingState{}
				}
			}
		}
	}
}

// fakeClock is a clock whose time moves only when the test says so.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*fakeTimer
	changed chan struct{}
}

type fakeTimer struct {
	at     time.Time
	period time.Duration // 0: a one-shot timer
	ch     chan time.Time
	dead   bool
}

func newFakeClock() *fakeClock { return &fakeClock{now: t0, changed: make(chan struct{})} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) add(d, period time.Duration) (<-chan time.Time, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ft := &fakeTimer{at: c.now.Add(d), period: period, ch: make(chan time.Time, 1)}
	c.timers = append(c.timers, ft)
	close(c.changed)
	c.changed = make(chan struct{})
	return ft.ch, func() {
		c.mu.Lock()
		ft.dead = true
		c.mu.Unlock()
	}
}

func (c *fakeClock) NewTimer(d time.Duration) (<-chan time.Time, func())  { return c.add(d, 0) }
func (c *fakeClock) NewTicker(d time.Duration) (<-chan time.Time, func()) { return c.add(d, d) }

// oneShots is the number of live one-shot timers: the loop is waiting on one
// when it is debouncing or backing off.
func (c *fakeClock) oneShots() (int, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.dead && t.period == 0 {
			n++
		}
	}
	return n, c.changed
}

// waitTimer blocks until the loop waits on a one-shot timer.
func (c *fakeClock) waitTimer(t *testing.T) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		n, changed := c.oneShots()
		if n > 0 {
			return
		}
		select {
		case <-changed:
		case <-time.After(5 * time.Millisecond):
		case <-deadline:
			t.Fatal("the loop never waited on a timer")
		}
	}
}

// fireNext moves the time to the earliest live one-shot timer and fires it,
// returning how far the time moved.
func (c *fakeClock) fireNext() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var next *fakeTimer
	for _, t := range c.timers {
		if !t.dead && t.period == 0 && (next == nil || t.at.Before(next.at)) {
			next = t
		}
	}
	if next == nil {
		return 0
	}
	d := max(next.at.Sub(c.now), 0)
	c.now = c.now.Add(d)
	next.dead = true
	next.ch <- c.now
	return d
}

// fakeSaves plays a store that is down for the first `down` attempts.
type fakeSaves struct {
	mu       sync.Mutex
	down     int
	attempts []time.Time
	clock    *fakeClock
	ok       chan struct{}
}

func (f *fakeSaves) save(context.Context) (*snapshot.SaveStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts = append(f.attempts, f.clock.Now())
	if len(f.attempts) <= f.down {
		return nil, fmt.Errorf("put %q in store s3://b: %w", "objects/ab", syscall.ECONNREFUSED)
	}
	select {
	case f.ok <- struct{}{}:
	default:
	}
	return &snapshot.SaveStats{ID: fmt.Sprintf("%010d", len(f.attempts))}, nil
}

// TestLoopRetriesOnFakeClock runs the real loop (not decide alone) against a
// store that fails 9 saves in a row, on a fake clock: every failure is
// followed by another attempt after the backoff (1 s doubling to 30 s), the
// tenth attempt succeeds, and /healthz and /metrics say what happened while
// it failed. On the loop this replaced, the second attempt never came.
func TestLoopRetriesOnFakeClock(t *testing.T) {
	ws := t.TempDir()
	repo := openRepo(t, storetest.FileURL(t.TempDir()), "fakeclock")
	s, err := New(testConfig(ws), repo, quietLog(t))
	must(t, err)
	defer s.Close()
	clk := newFakeClock()
	fs := &fakeSaves{down: 9, clock: clk, ok: make(chan struct{}, 1)}
	s.clock, s.save, s.rng = clk, fs.save, rand.New(rand.NewPCG(3, 4))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.loop(ctx) }()

	var waits []time.Duration
	for i := 0; i < 9; i++ {
		clk.waitTimer(t)
		if i == 5 {
			checkFailingHealth(t, s, 6)
		}
		waits = append(waits, clk.fireNext())
	}
	select {
	case <-fs.ok:
	case <-time.After(10 * time.Second):
		t.Fatalf("no successful save after 9 failures; attempts at %v", fs.attempts)
	}
	for i, w := range waits {
		cap := backoff(i + 1)
		if w < cap/2 || w > cap {
			t.Errorf("wait %d after failure: %s, want within [%s, %s]", i+1, w, cap/2, cap)
		}
	}
	// Back to health: the failure record is gone.
	deadline := time.Now().Add(5 * time.Second)
	for s.failureState().count != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	rec := httptest.NewRecorder()
	s.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 200 {
		t.Fatalf("/healthz after recovery: %d %s", rec.Code, rec.Body.String())
	}
	cancel()
	<-done
	t.Logf("waits between attempts: %v", waits)
}

func checkFailingHealth(t *testing.T, s *Syncer, failuresInRow int) {
	t.Helper()
	rec := httptest.NewRecorder()
	s.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	body := rec.Body.String()
	if rec.Code != 503 || !strings.Contains(body, fmt.Sprintf(`"consecutiveFailures":%d`, failuresInRow)) ||
		!strings.Contains(body, `"errorKind":"store-unavailable"`) || !strings.Contains(body, `"state":"backing-off"`) ||
		!strings.Contains(body, `"failingSince"`) {
		t.Fatalf("/healthz while failing: %d %s", rec.Code, body)
	}
	rec = httptest.NewRecorder()
	s.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	m := rec.Body.String()
	for _, want := range []string{
		fmt.Sprintf("tether_sync_consecutive_failures %d", failuresInRow),
		fmt.Sprintf(`tether_sync_save_failures_total{kind="store-unavailable"} %d`, failuresInRow),
		"tether_sync_failing_seconds ",
	} {
		if !strings.Contains(m, want) {
			t.Fatalf("/metrics lacks %q:\n%s", want, m)
		}
	}
}

func TestErrorKind(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&fs.PathError{Op: "open", Path: "/store/x", Err: syscall.ENOSPC}, kindFull},
		{fmt.Errorf("put: %w", &fs.PathError{Op: "open", Path: "/store/x", Err: syscall.EACCES}), kindDenied},
		{fmt.Errorf("put: %w", syscall.EROFS), kindDenied},
		{fmt.Errorf("put: %w", syscall.ECONNREFUSED), kindUnavailable},
		{fmt.Errorf("put: %w", context.DeadlineExceeded), kindUnavailable},
		{errors.New("api error XMinioStorageFull: Storage backend has reached its minimum free drive threshold"), kindFull},
		{errors.New("operation error S3: PutObject, api error AccessDenied: Access Denied."), kindDenied},
		{&snapshot.CorruptError{}, kindCorrupt},
		{errors.New("something else"), kindOther},
	} {
		if got := errorKind(tc.err); got != tc.want {
			t.Errorf("errorKind(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}

// TestSyncResumesAfterStoreOutage is the acceptance test of the loop: the
// store refuses every write for a while (3 s here, as in a short outage;
// the fault campaign in test/faults covers 30 s and 2 min with real MinIO
// and file:// stores), a writer keeps writing through it, and once the store
// is back the snapshots resume within the backoff cap plus one save, and the
// first good one holds every change made during the outage. On the loop this
// replaced, no snapshot ever came after the first failure.
func TestSyncResumesAfterStoreOutage(t *testing.T) {
	for _, outage := range []time.Duration{3 * time.Second} {
		t.Run(outage.String(), func(t *testing.T) {
			ws := t.TempDir()
			st, err := store.Open(context.Background(), storetest.FileURL(t.TempDir()))
			must(t, err)
			defer st.Close()
			inj := storefault.New(st, 1)
			repo, err := snapshot.OpenRepo(inj, "default", "outage")
			must(t, err)
			cfg := testConfig(ws)
			cfg.Rescan = time.Hour // only events and the retries can save
			_, stop := startSync(t, cfg, repo)
			waitFor(t, repo, 5*time.Second, "the first snapshot", func(*snapshot.Manifest) bool { return true })

			inj.Add(storefault.Rule{Op: storefault.Put}, storefault.Rule{Op: storefault.PutIfAbsent})
			writes := map[string]int{}
			deadline := time.Now().Add(outage)
			for i := 0; time.Now().Before(deadline); i++ {
				name := fmt.Sprintf("during/%03d.txt", i)
				must(t, os.MkdirAll(filepath.Join(ws, "during"), 0o755))
				must(t, os.WriteFile(filepath.Join(ws, name), []byte(name), 0o644))
				writes[name] = len(name)
				time.Sleep(100 * time.Millisecond)
			}
			if inj.Hits() == 0 {
				t.Fatal("no save was attempted during the outage")
			}
			inj.Clear()
			cleared := time.Now()
			d := waitFor(t, repo, backoffMax+10*time.Second, "every write made during the outage", func(m *snapshot.Manifest) bool {
				for name, size := range writes {
					if !hasFile(m, name, int64(size)) {
						return false
					}
				}
				return true
			})
			t.Logf("outage %s, %d writes, %d injected failures; everything saved %s after the store came back",
				outage, len(writes), inj.Hits(), d)
			if since := time.Since(cleared); since > backoffMax+5*time.Second {
				t.Fatalf("snapshots resumed %s after the store came back, want within the backoff cap %s plus one save", since, backoffMax)
			}
			must(t, stop())
		})
	}
}

// TestFinalSnapshotRetriesWithinBudget: a store that fails at the moment of
// SIGTERM and comes back a moment later still gets the final snapshot.
func TestFinalSnapshotRetriesWithinBudget(t *testing.T) {
	ws := t.TempDir()
	st, err := store.Open(context.Background(), storetest.FileURL(t.TempDir()))
	must(t, err)
	defer st.Close()
	inj := storefault.New(st, 1)
	repo, err := snapshot.OpenRepo(inj, "default", "finalretry")
	must(t, err)
	cfg := testConfig(ws)
	cfg.Debounce, cfg.MaxDelay, cfg.Rescan = time.Minute, time.Minute, time.Hour
	_, stop := startSync(t, cfg, repo)
	waitFor(t, repo, 5*time.Second, "the first snapshot", func(*snapshot.Manifest) bool { return true })
	must(t, os.WriteFile(filepath.Join(ws, "last.txt"), []byte("the last words"), 0o644))
	inj.Add(storefault.Rule{Op: storefault.PutIfAbsent, Count: 1}, storefault.Rule{Op: storefault.Put, Count: 1})
	if err := stop(); err != nil {
		t.Fatalf("final snapshot with a store that failed twice: %v", err)
	}
	waitFor(t, repo, time.Second, "last.txt", func(m *snapshot.Manifest) bool { return hasFile(m, "last.txt", 14) })
}
