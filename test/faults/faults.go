package faults

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tether-dev/tether/test/agentwriter"
)

// Kind names a fault.
type Kind string

// The faults the campaign injects.
const (
	// Store outages: no save can complete until the fault clears.
	FileUnwritable Kind = "file-unwritable" // file:// store directories read-only for the sync's user
	StoreFull      Kind = "store-full"      // file:// store's file system full
	MinioKilled    Kind = "minio-killed"    // MinIO SIGKILLed, restarted on the same port and data
	Errors5xx      Kind = "5xx-burst"       // every request answered 500/503 by the proxy
	// Degradations: saves are slowed or disturbed, or the sync is stopped.
	Latency       Kind = "latency"        // every request delayed by the proxy
	LostAcks      Kind = "lost-acks"      // half the writes done but their answers dropped
	WorkspaceFull Kind = "workspace-full" // the workspace's file system full (the writer fails too)
	SigStop       Kind = "sigstop"        // the sync SIGSTOPped, then SIGCONTed
)

// Outage says whether k makes the store unavailable: after such a fault the
// first snapshot that started after it cleared must hold every write made
// before it cleared (the failed saves' work put back, nothing dropped).
func (k Kind) Outage() bool {
	return k == FileUnwritable || k == StoreFull || k == MinioKilled || k == Errors5xx
}

// Kinds returns the faults a session can take: the proxy's only behind a
// proxy, minio-killed only on MinIO, store-full only on a store tmpfs,
// workspace-full only on a workspace tmpfs.
func (s *Session) Kinds() []Kind {
	ks := []Kind{SigStop}
	if s.cfg.WorkspaceTmpfs > 0 {
		ks = append(ks, WorkspaceFull)
	}
	switch s.cfg.Store {
	case FileStore:
		ks = append(ks, FileUnwritable)
		if s.cfg.StoreTmpfs > 0 {
			ks = append(ks, StoreFull)
		}
	case MinioStore:
		ks = append(ks, MinioKilled)
		if s.proxy != nil {
			ks = append(ks, Latency, Errors5xx, LostAcks)
		}
	}
	return ks
}

// Limits of the checks.
const (
	// BackoffCap is the longest wait of the sync between failed saves.
	BackoffCap = 30 * time.Second
	// MaxDelay is the sync's default --max-delay: the longest a change waits
	// for its snapshot while changes keep coming.
	MaxDelay = 1500 * time.Millisecond
	// OneSave bounds one save of the campaign's small workspace on a loaded
	// 2-core machine, store retries of a request that was in flight when
	// the fault cleared included.
	OneSave = 8 * time.Second
	// RecoveryBound: after a fault clears, a snapshot must have started
	// (and be in the store) within the backoff cap plus one save.
	RecoveryBound = BackoffCap + MaxDelay + OneSave
	// Window is the data-loss window the checks allow in steady state: a
	// write older than this must be in the newest snapshot (--max-delay,
	// one save and the observer's listing, with room for a loaded machine).
	Window = 5 * time.Second
	// boundaryGuard: a write logged this shortly before a snapshot's save
	// started may not have reached the sync's file watcher yet.
	boundaryGuard = 50 * time.Millisecond
	// settle is how long a session runs after recovering before the window
	// check; longer than Window, so that a sync saving too rarely shows.
	settle = Window + 2*time.Second
)

// Result is what one fault did and what the checks found.
type Result struct {
	Kind    Kind
	Target  string // the session's store kind
	Held    time.Duration
	Cleared time.Time
	// Recovered: a snapshot started after the fault cleared; Recovery is
	// from the clear until the observer listed it.
	Recovered bool
	Recovery  time.Duration
	FirstGood string
	// MissingFirst are writes made before the fault cleared that the first
	// good snapshot lacks (outages only; must be none).
	MissingFirst []agentwriter.Entry
	// Checked and LostBeyondWindow: writes older than Window at the window
	// check, and those of them the newest snapshot lacks (must be none).
	Checked          int
	LostBeyondWindow []agentwriter.Entry
	// Windows is the data-loss window of each kind of write at the window
	// check (agentwriter's measure).
	Windows map[string]time.Duration
	// Stalest is the largest age the newest listed snapshot reached (from
	// its save's start) between the recovery and the window check, while
	// the writer kept writing: the data-loss window if the node had died
	// then.
	Stalest time.Duration
	Errs    []string
}

// Failed says whether any check failed.
func (r *Result) Failed() bool { return len(r.Errs) > 0 }

func (r *Result) errorf(format string, args ...any) {
	r.Errs = append(r.Errs, fmt.Sprintf(format, args...))
}

// inject starts fault k and returns the function that clears it. clear
// returns once the fault is gone (MinIO answering again).
func (s *Session) inject(k Kind) (clear func() error, err error) {
	switch k {
	case FileUnwritable:
		modes, err := makeReadOnly(s.store)
		if err != nil {
			modes.restore()
			return nil, fmt.Errorf("make the store %s read-only: %w", s.store, err)
		}
		return modes.restore, nil
	case StoreFull:
		ballast := filepath.Join(filepath.Dir(s.store), "ballast")
		if _, err := Fill(ballast, s.cfg.StoreTmpfs+1); err != nil {
			os.Remove(ballast)
			return nil, err
		}
		return func() error { return os.Remove(ballast) }, nil
	case WorkspaceFull:
		// Under .cache/, which the sync leaves out by default: the ballast
		// is not agent work, only what fills the disk.
		ballast := filepath.Join(s.WS, ".cache", "ballast")
		if err := os.MkdirAll(filepath.Dir(ballast), 0o755); err != nil {
			return nil, err
		}
		if _, err := Fill(ballast, s.cfg.WorkspaceTmpfs+1); err != nil {
			os.Remove(ballast)
			return nil, err
		}
		return func() error { return os.Remove(ballast) }, nil
	case MinioKilled:
		if err := s.cfg.Minio.Kill(); err != nil {
			return nil, err
		}
		return func() error { return s.cfg.Minio.Restart(2 * time.Minute) }, nil
	case Latency:
		s.proxy.Latency(3 * time.Second)
		return func() error { s.proxy.Clear(); return nil }, nil
	case Errors5xx:
		s.proxy.Errors()
		return func() error { s.proxy.Clear(); return nil }, nil
	case LostAcks:
		s.proxy.LostAcks(0.5)
		return func() error { s.proxy.Clear(); return nil }, nil
	case SigStop:
		if err := s.syncCmd.Process.Signal(syscall.SIGSTOP); err != nil {
			return nil, err
		}
		return func() error { return s.syncCmd.Process.Signal(syscall.SIGCONT) }, nil
	}
	return nil, fmt.Errorf("unknown fault %q", k)
}

// RunFault injects fault k for hold, clears it, and checks: (b) a snapshot
// started within RecoveryBound of the clear and, after a store outage, it
// holds every write made before the clear; (a) a few seconds later the
// newest snapshot holds every write older than Window.
func (s *Session) RunFault(k Kind, hold time.Duration) Result {
	r := Result{Kind: k, Target: string(s.cfg.Store), Held: hold}
	if err := s.SyncAlive(); err != nil {
		r.errorf("before %s: %v", k, err)
		return r
	}
	clear, err := s.inject(k)
	if err != nil {
		r.errorf("inject %s: %v", k, err)
		return r
	}
	time.Sleep(hold)
	if err := clear(); err != nil {
		r.errorf("clear %s: %v", k, err)
		return r
	}
	r.Cleared = time.Now()

	// Wait past the bound, to measure how late a slow recovery is, but not
	// forever: a stalled sync never recovers.
	sn, err := s.WaitSnapshot(r.Cleared, RecoveryBound+15*time.Second)
	if err != nil {
		r.errorf("%s held %s: after it cleared: %v", k, hold, err)
		return r
	}
	r.Recovered, r.Recovery, r.FirstGood = true, sn.Seen.Sub(r.Cleared), sn.ID
	if r.Recovery > RecoveryBound {
		r.errorf("%s held %s: the first snapshot after it cleared (%s) came %s later; the bound is %s (backoff cap %s + max delay %s + one save %s)",
			k, hold, sn.ID, r.Recovery.Round(time.Millisecond), RecoveryBound, BackoffCap, MaxDelay, OneSave)
	}
	if k.Outage() {
		if err := s.checkFirstGood(&r, sn); err != nil {
			r.errorf("%s held %s: check the first good snapshot %s: %v", k, hold, sn.ID, err)
		}
	}
	time.Sleep(settle)
	r.Stalest = s.stalest(sn.Seen, time.Now())
	if r.Stalest > Window {
		r.errorf("%s held %s: after the recovery the newest snapshot in the store was %s old at one point (since its save started), more than the %s window; the snapshots since the recovery:\n%s",
			k, hold, r.Stalest.Round(time.Millisecond), Window, s.timeline(sn.Seen))
	}
	if err := s.checkWindow(&r); err != nil {
		r.errorf("%s held %s: window check: %v", k, hold, err)
	}
	return r
}

// checkFirstGood: the first snapshot that started after the clear holds
// every write logged before the clear (and before its start, less the
// watcher's latency).
func (s *Session) checkFirstGood(r *Result, sn snapInfo) error {
	entries, err := s.Log()
	if err != nil {
		return err
	}
	state, err := s.restoreState(sn.ID)
	if err != nil {
		return err
	}
	cut := r.Cleared
	if t := sn.Time.Add(-boundaryGuard); t.Before(cut) {
		cut = t
	}
	for _, e := range entries {
		if e.At.Before(cut) && !state.Has(e) {
			r.MissingFirst = append(r.MissingFirst, e)
		}
	}
	if n := len(r.MissingFirst); n > 0 {
		return fmt.Errorf("%d writes made before the fault cleared are missing, the first: %s", n, describe(r.MissingFirst, cut))
	}
	return nil
}

// stalest is the largest age, from its save's start, that the newest
// snapshot the observer had listed reached between from and to.
func (s *Session) stalest(from, to time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var worst time.Duration
	var prev *snapInfo
	for i := range s.snaps {
		sn := &s.snaps[i]
		if sn.Seen.After(to) {
			break
		}
		if prev != nil && sn.Seen.After(from) {
			worst = max(worst, sn.Seen.Sub(prev.Time))
		}
		prev = sn
	}
	if prev != nil {
		worst = max(worst, to.Sub(prev.Time))
	}
	return worst
}

// checkWindow: the newest snapshot the observer has listed holds every
// write older than Window.
func (s *Session) checkWindow(r *Result) error {
	var lastErr error
	// The newest snapshot can be pruned by retention while it is being
	// restored; then the next newest is taken.
	for range 3 {
		if err := s.SyncAlive(); err != nil {
			return err
		}
		now := time.Now()
		sn, ok := s.latestSeenBy(now)
		if !ok {
			return errors.New("the store has no snapshot")
		}
		entries, err := s.Log()
		if err != nil {
			return err
		}
		state, err := s.restoreState(sn.ID)
		if err != nil {
			lastErr = err
			time.Sleep(time.Second)
			continue
		}
		r.Checked, r.LostBeyondWindow, r.Windows = 0, nil, map[string]time.Duration{}
		cut := now.Add(-Window)
		for _, e := range entries {
			if !e.At.Before(cut) {
				continue
			}
			r.Checked++
			if !state.Has(e) {
				r.LostBeyondWindow = append(r.LostBeyondWindow, e)
			}
		}
		for _, kind := range []string{agentwriter.KindTranscript, agentwriter.KindSessionID, agentwriter.KindUntracked, agentwriter.KindCommit} {
			r.Windows[kind] = max(0, state.Window(entries, kind, time.Time{}, now))
		}
		if n := len(r.LostBeyondWindow); n > 0 {
			return fmt.Errorf("the newest snapshot %s (save started %s) lacks %d writes older than %s, the first: %s",
				sn.ID, sn.Time.Format("15:04:05.000"), n, Window, describe(r.LostBeyondWindow, now))
		}
		return nil
	}
	return lastErr
}

// describe names the first few writes and their age at t.
func describe(es []agentwriter.Entry, t time.Time) string {
	var parts []string
	for i, e := range es {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("and %d more", len(es)-5))
			break
		}
		parts = append(parts, fmt.Sprintf("%s#%d at %s (%s before)", e.Kind, e.Seq, e.At.Format("15:04:05.000"), t.Sub(e.At).Round(time.Millisecond)))
	}
	return strings.Join(parts, ", ")
}

// timeline lists the snapshots the observer saw from a little before t:
// when each save started and when it was seen in the store, the two ends of
// the staleness that RunFault checks.
func (s *Session) timeline(t time.Time) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, sn := range s.snaps {
		if sn.Seen.Before(t.Add(-3 * time.Second)) {
			continue
		}
		fmt.Fprintf(&b, "  %s: save started %s, seen %s (%s later)\n", sn.ID, sn.Time.Format("15:04:05.000"), sn.Seen.Format("15:04:05.000"), sn.Seen.Sub(sn.Time).Round(time.Millisecond))
	}
	return b.String()
}
