package statesync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/tether-dev/tether/internal/snapshot"
)

// SnapshotRequestFile is the file the runner rewrites when a snapshot must
// happen now (the agent CLI's session id was just persisted). The sync loop
// sees it through its file watcher and saves without waiting for debounce.
const SnapshotRequestFile = ".tether/snapshot-request"

// Syncer runs the sync loop for one workspace.
type Syncer struct {
	cfg     Config
	repo    *snapshot.Repo
	saver   *snapshot.Saver
	save    func(context.Context) (*snapshot.SaveStats, error) // saver.Save; a fake in loop tests
	clock   clock
	rng     *rand.Rand // backoff jitter
	log     *slog.Logger
	exclude *Matcher
	Metrics *Metrics

	mu           sync.Mutex
	pending      pendingState
	lastCaptured map[string]time.Time // repo path -> last capture
	// repos are the git repositories the last good save met (their paths),
	// so that a file event is charged to the repositories holding it.
	repos       map[string]bool
	saves       int
	taking      taken // what the running save works from
	saving      bool
	lastLeftOut string
	phase       phase    // what the loop is doing (for /healthz)
	fails       failures // the current run of failed saves

	// kick wakes the loop when something arrived (buffered, never blocks).
	kick chan struct{}
}

// pendingState is what changed since the last snapshot started.
type pendingState struct {
	since     time.Time // first unsaved change; zero when clean
	last      time.Time // newest change
	urgent    bool      // the runner asked for a snapshot now
	rescan    bool      // a rescan of the files is due (timer)
	full      bool      // a rescan of everything, repositories included (start, overflow, final)
	repoDirty map[string]bool
}

func (p *pendingState) dirty() bool { return !p.since.IsZero() || p.urgent || p.rescan || p.full }

// New prepares a Syncer. cfg must be valid (see Config.Validate).
func New(cfg Config, repo *snapshot.Repo, log *slog.Logger) (*Syncer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ex, _ := NewMatcher(cfg.Excludes)
	s := &Syncer{cfg: cfg, repo: repo, log: log, exclude: ex, lastCaptured: map[string]time.Time{}, kick: make(chan struct{}, 1),
		clock: realClock{}, rng: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
	s.pending.repoDirty = map[string]bool{}
	saver, err := snapshot.NewSaver(repo, cfg.Workspace, snapshot.SaveOptions{
		CacheDir:       cfg.CacheDir,
		Exclude:        ex.Match,
		CaptureRepo:    s.captureRepo,
		RepoChanged:    s.repoChanged,
		SkipUnchanged:  true,
		MaxBytes:       cfg.MaxBytes,
		KeepIgnored:    cfg.KeepIgnored,
		ConsistentCopy: SQLiteCopier(cfg.CacheDir),
		Writer:         writerSource(repo, cfg.Workspace, log), // fence.go
		Log:            log,
	})
	if err != nil {
		return nil, err
	}
	s.saver = saver
	s.save = saver.Save
	s.Metrics = newMetrics(s)
	return s, nil
}

// repoChanged: file events were seen in the repository since its last
// capture, so the save need not fingerprint it first.
func (s *Syncer) repoChanged(rel string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.taking.repoDirty[rel]
}

func (s *Syncer) captureRepo(rel string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Called during a save, after the pending state was taken: the decision
	// uses what the save took (s.taking).
	t := &s.taking
	last, ok := s.lastCaptured[rel]
	if t.full || t.repoDirty[rel] || !ok || time.Since(last) >= s.cfg.RepoInterval {
		t.captured = append(t.captured, rel)
		return true
	}
	return false
}

// note records a change seen by the watcher.
func (s *Syncer) note(c change) {
	s.mu.Lock()
	now := s.clock.Now()
	switch {
	case c.overflow:
		s.pending.full = true
		s.log.Warn("file events were lost (queue overflow); rescanning the whole workspace")
	case c.rel == SnapshotRequestFile:
		s.pending.urgent = true
	default:
		if s.ignored(c.rel) {
			s.mu.Unlock()
			return
		}
		s.markRepos(c.rel)
	}
	if s.pending.since.IsZero() {
		s.pending.since = now
	}
	s.pending.last = now
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// ignored: events under tether's own scratch areas and excluded paths.
func (s *Syncer) ignored(rel string) bool {
	if rel == ".tether/cache" || strings.HasPrefix(rel, ".tether/cache/") || rel == ".tether-restore" || strings.HasPrefix(rel, ".tether-restore/") {
		return true
	}
	for p := rel; p != "." && p != "/" && p != ""; p = path.Dir(p) {
		if s.exclude.Match(p, p != rel) {
			return true
		}
	}
	return false
}

// markRepos marks dirty every known repository holding rel (a submodule's
// change dirties its superproject too: the superproject's capture is what
// captures it again), and repos/<name> for a path under repos/ before the
// first save has named the repositories. s.mu is held.
func (s *Syncer) markRepos(rel string) {
	if parts := strings.SplitN(rel, "/", 3); len(parts) >= 2 && parts[0] == "repos" {
		s.pending.repoDirty["repos/"+parts[1]] = true
	}
	for p := rel; p != "." && p != "/" && p != ""; p = path.Dir(p) {
		if s.repos[p] {
			s.pending.repoDirty[p] = true
		}
	}
}

// Run snapshots until ctx is cancelled, then takes the final snapshot within
// FinalBudget. It returns nil when the final snapshot completed, and the
// save's error at once when a save says this sync must stop (stopsSync).
// A failed save never ends the loop: it backs off (see decide) and tries
// again, for as long as it takes.
func (s *Syncer) Run(ctx context.Context) error {
	w, err := newWatcher(s.cfg.Workspace, s.exclude, s.log)
	if err != nil {
		return fmt.Errorf("watch workspace %s: %w", s.cfg.Workspace, err)
	}
	defer w.close()
	go func() {
		for c := range w.out {
			s.note(c)
		}
	}()
	return s.loop(ctx)
}

// loop is Run after the watcher started: the state machine of loop.go.
func (s *Syncer) loop(ctx context.Context) error {
	// The first snapshot right away: work done before the sync started
	// (hydrate, clones) is protected from the first second.
	s.mu.Lock()
	s.pending.full = true
	s.pending.since = s.clock.Now()
	s.mu.Unlock()

	rescan, stopRescan := s.clock.NewTicker(s.cfg.Rescan)
	defer stopRescan()
	for {
		s.mu.Lock()
		ph, wait := decide(&s.pending, &s.fails, &s.cfg, s.clock.Now())
		s.phase = ph
		s.mu.Unlock()

		if ph == phaseSaving {
			err := s.saveOnce(ctx)
			switch {
			case err == nil:
			case isStop(err):
				s.setPhase(phaseFinal)
				s.log.Error("sync stopped: this session's snapshots are written by another process now", "err", err)
				return err
			case ctx.Err() != nil:
				return s.final()
			default:
				s.saveFailed(err)
			}
			continue
		}

		var timer <-chan time.Time
		stopTimer := func() {}
		if ph != phaseIdle {
			timer, stopTimer = s.clock.NewTimer(wait)
		}
		select {
		case <-ctx.Done():
			stopTimer()
			return s.final()
		case <-s.kick:
		case <-rescan:
			s.mu.Lock()
			s.pending.rescan = true
			if s.pending.since.IsZero() {
				s.pending.since = s.clock.Now()
			}
			s.mu.Unlock()
		case <-timer:
		}
		stopTimer()
	}
}

func (s *Syncer) setPhase(ph phase) {
	s.mu.Lock()
	s.phase = ph
	s.mu.Unlock()
}

// saveFailed records a failed save and logs it: each of the first three
// failures in a row, then only when the kind of error changes or every tenth
// time, so a long outage does not flood the log.
func (s *Syncer) saveFailed(err error) {
	s.mu.Lock()
	prevKind := s.fails.kind
	wait := s.fails.failed(err, s.clock.Now(), s.rng)
	n, since, kind := s.fails.count, s.fails.since, s.fails.kind
	s.mu.Unlock()
	if n <= 3 || kind != prevKind || n%10 == 0 {
		s.log.Error("snapshot failed; retrying", "kind", kind, "failures", n,
			"failingFor", s.clock.Now().Sub(since).Round(time.Millisecond), "retryIn", wait.Round(time.Millisecond), "err", err)
	}
}

// taken is the pending state a save works from.
type taken struct {
	since     time.Time
	repoDirty map[string]bool
	full      bool
	captured  []string // repositories this save decided to capture
}

// saveOnce takes one snapshot of what is pending. Changes that arrive
// during it stay pending for the next one.
func (s *Syncer) saveOnce(ctx context.Context) error {
	s.mu.Lock()
	p := s.pending
	s.taking = taken{since: p.since, repoDirty: p.repoDirty, full: p.full}
	s.pending = pendingState{repoDirty: map[string]bool{}}
	s.saving = true
	s.mu.Unlock()

	start := s.clock.Now()
	st, err := s.save(ctx)
	s.mu.Lock()
	s.saving = false
	s.mu.Unlock()
	s.Metrics.observe(st, err, s.clock.Now().Sub(start))
	if err != nil {
		// Put back what this save did not protect.
		s.mu.Lock()
		if s.pending.since.IsZero() || p.since.Before(s.pending.since) {
			s.pending.since = p.since
		}
		if p.last.After(s.pending.last) {
			s.pending.last = p.last
		}
		s.pending.urgent = s.pending.urgent || p.urgent
		s.pending.rescan = true
		s.pending.full = s.pending.full || p.full
		for r := range p.repoDirty {
			s.pending.repoDirty[r] = true
		}
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	for _, r := range s.taking.captured {
		s.lastCaptured[r] = start
	}
	s.repos = make(map[string]bool, len(st.RepoPaths))
	for _, r := range st.RepoPaths {
		s.repos[r] = true
	}
	if s.fails.count > 0 {
		s.log.Info("snapshots resumed", "afterFailures", s.fails.count, "failedFor", start.Sub(s.fails.since).Round(time.Millisecond))
	}
	s.fails = failures{}
	s.saves++
	saves := s.saves
	s.mu.Unlock()
	// A save's buffers (chunks in flight, listings) are garbage now; hand the
	// memory back so an idle sidecar stays small (it costs a GC, about a
	// millisecond per 10 MiB of live heap, once per save).
	debug.FreeOSMemory()
	if len(st.LeftOut) > 0 || len(st.ReposAsFiles) > 0 {
		s.logLeftOut(st)
	} else {
		s.mu.Lock()
		s.lastLeftOut = ""
		s.mu.Unlock()
	}
	if !st.Unchanged {
		s.log.Info("snapshot saved", "id", st.ID, "files", st.Files, "repos", st.Repos, "reposCaptured", st.ReposCaptured,
			"leftOut", len(st.LeftOut), "reposAsFiles", len(st.ReposAsFiles),
			"bytesRead", st.BytesRead, "bytesUploaded", st.BytesUploaded, "objects", st.ObjectsUploaded, "ms", st.DurationMs)
	}
	if s.cfg.Keep > 0 && saves%20 == 0 {
		s.prune(ctx)
	}
	return nil
}

func (s *Syncer) prune(ctx context.Context) {
	ps, err := snapshot.Prune(ctx, s.repo, s.cfg.Keep)
	switch {
	case errors.Is(err, snapshot.ErrLocked):
		// A save by someone else is running; the next round will do it.
	case err != nil:
		s.Metrics.errors.WithLabelValues("prune").Inc()
		s.log.Warn("retention failed", "err", err)
	case len(ps.RemovedSnapshots) > 0:
		s.log.Info("retention", "removedSnapshots", len(ps.RemovedSnapshots), "removedObjects", ps.RemovedObjects, "removedBytes", ps.RemovedBytes)
	}
}

// final takes the last snapshot of everything within FinalBudget, whatever
// is or is not pending: the events of the last moments may not have arrived.
// A failed attempt is retried with the loop's backoff while the budget lasts
// (a store that blinks at shutdown still gets the last snapshot).
func (s *Syncer) final() error {
	s.setPhase(phaseFinal)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.FinalBudget)
	defer cancel()
	start := s.clock.Now()
	for attempt := 1; ; attempt++ {
		s.mu.Lock()
		s.pending.full = true
		s.pending.last = time.Time{}
		if s.pending.since.IsZero() {
			s.pending.since = s.clock.Now()
		}
		s.mu.Unlock()
		err := s.saveOnce(ctx)
		if err == nil {
			s.log.Info("final snapshot complete", "ms", s.clock.Now().Sub(start).Milliseconds(), "attempts", attempt)
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("final snapshot did not finish within --final-budget %s (%d attempts): %w", s.cfg.FinalBudget, attempt, err)
		}
		if isStop(err) {
			return err
		}
		s.saveFailed(err)
		s.mu.Lock()
		wait := s.fails.retryAt.Sub(s.clock.Now())
		s.mu.Unlock()
		timer, stop := s.clock.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			stop()
			return fmt.Errorf("final snapshot did not finish within --final-budget %s (%d attempts): %w", s.cfg.FinalBudget, attempt, err)
		case <-timer:
		}
	}
}

// logLeftOut reports what the save left out of the snapshot (over the size
// cap, unreadable, vanished, special files) and the repositories it saved
// file by file, when that changes. Such a save succeeded: the sync does not
// retry it, and the next save, whatever triggers it, tries those entries
// again.
func (s *Syncer) logLeftOut(st *snapshot.SaveStats) {
	var capped, other []string
	for _, f := range st.LeftOut {
		if strings.HasPrefix(f.Reason, "over the size cap") {
			if len(capped) < 5 {
				capped = append(capped, fmt.Sprintf("%s (%d bytes)", snapshot.DisplayPath(f.Path), f.Size))
			}
			continue
		}
		if len(other) < 5 {
			other = append(other, snapshot.DisplayPath(f.Path)+": "+f.Reason)
		}
	}
	var repos []string
	for _, r := range st.ReposAsFiles {
		repos = append(repos, snapshot.DisplayPath(r.Path)+": "+r.Reason)
	}
	key := strings.Join(capped, ", ") + "\x00" + strings.Join(other, ", ") + "\x00" + strings.Join(repos, ", ")
	s.mu.Lock()
	same := key == s.lastLeftOut
	s.lastLeftOut = key
	s.mu.Unlock()
	if same {
		return
	}
	if st.LeftOutBytes > 0 {
		s.log.Warn("workspace is over --max-size: largest files left out of snapshots", "maxBytes", s.cfg.MaxBytes,
			"leftOutFiles", len(capped), "leftOutBytes", st.LeftOutBytes, "largest", strings.Join(capped, ", "))
	}
	if n := len(st.LeftOut) - len(capped); n > 0 {
		s.log.Warn("entries left out of the snapshot, the rest saved", "id", st.ID, "leftOut", n, "first", strings.Join(other, "; "))
	}
	if len(repos) > 0 {
		s.log.Warn("repositories saved file by file (.git included): git could not capture them", "id", st.ID, "repos", strings.Join(repos, "; "))
	}
}

// Saves returns how many saves completed (including those that found no change).
func (s *Syncer) Saves() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.saves
}

// Close releases the Saver's resources.
func (s *Syncer) Close() error { return s.saver.Close() }
