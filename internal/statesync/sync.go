package statesync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	log     *slog.Logger
	exclude *Matcher
	Metrics *Metrics

	mu           sync.Mutex
	pending      pendingState
	lastCaptured map[string]time.Time // repo path -> last capture
	saves        int
	taking       taken // what the running save works from
	saving       bool
	lastLeftOut  string

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
	s := &Syncer{cfg: cfg, repo: repo, log: log, exclude: ex, lastCaptured: map[string]time.Time{}, kick: make(chan struct{}, 1)}
	s.pending.repoDirty = map[string]bool{}
	saver, err := snapshot.NewSaver(repo, cfg.Workspace, snapshot.SaveOptions{
		CacheDir:       cfg.CacheDir,
		Exclude:        ex.Match,
		CaptureRepo:    s.captureRepo,
		RepoChanged:    s.repoChanged,
		SkipUnchanged:  true,
		MaxBytes:       cfg.MaxBytes,
		ConsistentCopy: SQLiteCopier(cfg.CacheDir),
		Writer:         writerSource(repo, cfg.Workspace, log), // fence.go
	})
	if err != nil {
		return nil, err
	}
	s.saver = saver
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
	now := time.Now()
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
		if repo := repoOf(c.rel); repo != "" {
			s.pending.repoDirty[repo] = true
		}
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

// repoOf returns "repos/<name>" for a path inside a repository directory.
func repoOf(rel string) string {
	parts := strings.SplitN(rel, "/", 3)
	if len(parts) >= 2 && parts[0] == "repos" {
		return "repos/" + parts[1]
	}
	return ""
}

// Run snapshots until ctx is cancelled, then takes the final snapshot within
// FinalBudget. It returns nil when the final snapshot completed.
func (s *Syncer) Run(ctx context.Context) error {
	w, err := newWatcher(s.saverWorkspace(), s.exclude, s.log)
	if err != nil {
		return fmt.Errorf("watch workspace %s: %w", s.cfg.Workspace, err)
	}
	defer w.close()
	go func() {
		for c := range w.out {
			s.note(c)
		}
	}()

	// The first snapshot right away: work done before the sync started
	// (hydrate, clones) is protected from the first second.
	s.mu.Lock()
	s.pending.full = true
	s.pending.since = time.Now()
	s.mu.Unlock()

	rescan := time.NewTicker(s.cfg.Rescan)
	defer rescan.Stop()
	retry := time.Duration(0)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return s.final()
		case <-s.kick:
		case <-rescan.C:
			s.mu.Lock()
			s.pending.rescan = true
			if s.pending.since.IsZero() {
				s.pending.since = time.Now()
			}
			s.mu.Unlock()
		case <-timer.C:
		}
		wait, ok := s.due()
		if !ok {
			continue // clean: sleep until something happens
		}
		if retry > 0 && wait < retry {
			wait = retry
		}
		if wait > 0 {
			timer.Reset(wait)
			continue
		}
		if err := s.saveOnce(ctx); err != nil {
			// A newer writer took the session over: stop at once (fence.go).
			if fe := fenced(err); fe != nil {
				return fe
			}
			if ctx.Err() != nil {
				return s.final()
			}
			retry = min(max(2*retry, time.Second), 30*time.Second)
			s.log.Error("snapshot failed; retrying", "in", retry, "err", err)
			timer.Reset(retry)
			continue
		}
		retry = 0
		if wait, ok := s.due(); ok {
			timer.Reset(wait)
		}
	}
}

func (s *Syncer) saverWorkspace() string { return s.cfg.Workspace }

// due says whether a save is needed and how long to wait before it.
func (s *Syncer) due() (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := &s.pending
	if !p.dirty() {
		return 0, false
	}
	if p.urgent || ((p.rescan || p.full) && p.last.IsZero()) {
		return 0, true
	}
	now := time.Now()
	at := p.last.Add(s.cfg.Debounce)
	if limit := p.since.Add(s.cfg.MaxDelay); limit.Before(at) {
		at = limit
	}
	return max(at.Sub(now), 0), true
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

	start := time.Now()
	st, err := s.saver.Save(ctx)
	s.mu.Lock()
	s.saving = false
	s.mu.Unlock()
	s.Metrics.observe(st, err, time.Since(start))
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
	s.saves++
	saves := s.saves
	s.mu.Unlock()
	// A save's buffers (chunks in flight, listings) are garbage now; hand the
	// memory back so an idle sidecar stays small (it costs a GC, about a
	// millisecond per 10 MiB of live heap, once per save).
	debug.FreeOSMemory()
	if len(st.LeftOut) > 0 {
		s.logLeftOut(st)
	}
	if !st.Unchanged {
		s.log.Info("snapshot saved", "id", st.ID, "files", st.Files, "repos", st.Repos, "reposCaptured", st.ReposCaptured,
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
func (s *Syncer) final() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.FinalBudget)
	defer cancel()
	s.mu.Lock()
	s.pending.full = true
	s.pending.last = time.Time{}
	if s.pending.since.IsZero() {
		s.pending.since = time.Now()
	}
	s.mu.Unlock()
	start := time.Now()
	if err := s.saveOnce(ctx); err != nil {
		if fe := fenced(err); fe != nil {
			return fe
		}
		if ctx.Err() != nil {
			return fmt.Errorf("final snapshot did not finish within --final-budget %s: %w", s.cfg.FinalBudget, err)
		}
		return fmt.Errorf("final snapshot failed: %w", err)
	}
	s.log.Info("final snapshot complete", "ms", time.Since(start).Milliseconds())
	return nil
}

// logLeftOut reports what the size cap kept out, when that changes.
func (s *Syncer) logLeftOut(st *snapshot.SaveStats) {
	var largest []string
	for i, f := range st.LeftOut {
		if i == 5 {
			largest = append(largest, fmt.Sprintf("and %d more", len(st.LeftOut)-5))
			break
		}
		largest = append(largest, fmt.Sprintf("%s (%d bytes)", f.Path, f.Size))
	}
	key := strings.Join(largest, ", ")
	s.mu.Lock()
	same := key == s.lastLeftOut
	s.lastLeftOut = key
	s.mu.Unlock()
	if !same {
		s.log.Warn("workspace is over --max-size: largest files left out of snapshots", "maxBytes", s.cfg.MaxBytes,
			"leftOutFiles", len(st.LeftOut), "leftOutBytes", st.LeftOutBytes, "largest", key)
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
