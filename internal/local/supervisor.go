package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tether-dev/tether/internal/fsutil"
	"github.com/tether-dev/tether/internal/redact"
	"github.com/tether-dev/tether/internal/runner"
	"github.com/tether-dev/tether/internal/snapshot"
	"github.com/tether-dev/tether/internal/statesync"
	"github.com/tether-dev/tether/internal/store"
)

// Config configures a Supervisor. Workspace, Namespace, Session and
// MemoryLimit are required; the rest has defaults.
type Config struct {
	Workspace string
	Namespace string
	Session   string
	// StoreURL is the store; empty means store.DefaultURL().
	StoreURL string
	// Repos are cloned into repos/<name> by hydrate when absent.
	Repos []statesync.RepoSpec

	// Self is the tether executable the children run (default: this one).
	Self string
	// Prompt is the session's first message. On a session that already had
	// its initial prompt (run again on the same workspace), a different
	// Prompt is sent as the next message instead, through the runner's API;
	// the same one is not sent again.
	Prompt string
	// RunnerArgs are appended to `tether runner --workspace W`, SyncArgs to
	// `tether sync --workspace W --store ... --namespace ... --session ...`.
	RunnerArgs []string
	SyncArgs   []string
	// KeepSetuid makes hydrate restore the setuid and setgid bits of files
	// (snapshot.RestoreOptions.KeepSetuid).
	KeepSetuid bool
	// Env is added to both children's environment, RunnerEnv to the
	// runner's only (the agent CLI and its tools inherit it).
	Env       []string
	RunnerEnv []string

	// MemoryLimit is the runner group's limit in bytes. With OOMBump > 1,
	// every OOM restart multiplies it by OOMBump, up to MemoryMax.
	MemoryLimit int64
	OOMBump     float64
	MemoryMax   int64
	// MemoryMode is MemoryAuto (default), MemoryCgroup or MemoryWatchdog.
	MemoryMode string

	// MaxRestarts bounds the runner restarts of one supervisor run.
	MaxRestarts int
	// The first restart is immediate (a session is waiting); the n-th
	// consecutive one waits BackoffBase*2^(n-2), at most BackoffMax; a
	// runner that lived StableAfter resets the count.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	StableAfter time.Duration
	// RunnerStopTimeout is how long the runner gets after SIGTERM (it
	// lets the CLI finish), SyncStopTimeout the sync for its final snapshot.
	RunnerStopTimeout time.Duration
	SyncStopTimeout   time.Duration

	// LogDir receives runner.log and sync.log (default: the workspace's
	// .tether/logs is NOT used, since the sync would snapshot its own log
	// forever; the caller passes a directory outside the workspace).
	LogDir string
	// Out is the terminal: supervisor lines and the agent's stream.
	Out io.Writer
	// ExitWhenIdle stops the session (final snapshot, exit) once the initial
	// prompt was delivered and every turn has its result.
	ExitWhenIdle bool
	// OnDeath, when set, is called after every runner death with its
	// record; returning false stops the session (gracefully) instead of
	// restarting the runner.
	OnDeath func(Death) bool
	// OnReady, when set, is called each time a runner life is ready.
	OnReady func(runner.Status)
	// Input, when set (a terminal), is read line by line; each line is sent
	// to the agent as a message, through the runner's HTTP API on Listen
	// (default: a free loopback port with a private token).
	Input  io.Reader
	Listen string
	// UI, when set, is the address the web page is served on (`tether run
	// --ui`); UIToken, when set, is required to see it (see package ui).
	UI      string
	UIToken string
	// OnUI, when set, is called with the address the page listens on.
	OnUI func(addr string)
}

func (c *Config) setDefaults() error {
	if c.Workspace == "" || !filepath.IsAbs(c.Workspace) {
		return fmt.Errorf("supervisor: workspace %q must be an absolute path", c.Workspace)
	}
	if c.Session == "" {
		return fmt.Errorf("supervisor: no session name")
	}
	if c.Namespace == "" {
		c.Namespace = "default"
	}
	if c.StoreURL == "" {
		c.StoreURL = store.DefaultURL()
	}
	if c.Self == "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("supervisor: find the tether executable: %w", err)
		}
		c.Self = self
	}
	if c.MemoryLimit <= 0 {
		return fmt.Errorf("supervisor: memory limit must be positive")
	}
	if c.OOMBump != 0 && c.OOMBump <= 1 {
		return fmt.Errorf("--oom-bump must be more than 1 (e.g. 1.5), got %g", c.OOMBump)
	}
	if c.OOMBump > 1 && c.MemoryMax < c.MemoryLimit {
		return fmt.Errorf("--memory-max (%s) must be at least --memory-limit (%s) when --oom-bump is set", FormatSize(c.MemoryMax), FormatSize(c.MemoryLimit))
	}
	if c.MaxRestarts < 0 {
		return fmt.Errorf("--max-restarts must be 0 or more, got %d", c.MaxRestarts)
	}
	if c.BackoffBase <= 0 {
		c.BackoffBase = 500 * time.Millisecond
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = 30 * time.Second
	}
	if c.StableAfter <= 0 {
		c.StableAfter = time.Minute
	}
	if c.RunnerStopTimeout <= 0 {
		c.RunnerStopTimeout = 30 * time.Second
	}
	if c.SyncStopTimeout <= 0 {
		c.SyncStopTimeout = 40 * time.Second
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.LogDir == "" {
		return fmt.Errorf("supervisor: no log directory")
	}
	return nil
}

// Backoff is the wait before the n-th consecutive restart (n >= 1): none for
// the first, as a kubelet restarts a container the first time; then doubling
// from base, at most maxWait, so a crash loop does not spin.
func Backoff(base, maxWait time.Duration, n int) time.Duration {
	if n <= 1 {
		return 0
	}
	d := float64(base) * math.Pow(2, float64(n-2))
	if d > float64(maxWait) || math.IsInf(d, 0) {
		return maxWait
	}
	return time.Duration(d)
}

// BumpLimit is the limit after an OOM: limit*factor rounded up to a MiB, at
// most max; it never lowers the limit.
func BumpLimit(limit int64, factor float64, maxLimit int64) int64 {
	if factor <= 1 {
		return limit
	}
	n := int64(math.Ceil(float64(limit)*factor/float64(1<<20))) << 20
	if n > maxLimit {
		n = maxLimit
	}
	if n < limit {
		return limit
	}
	return n
}

// Supervisor runs one session on this machine.
type Supervisor struct {
	cfg Config

	outMu sync.Mutex
	force chan struct{}
	once  sync.Once

	status Status
	jail   Jail
	tail   *eventTail

	// followUp: a prompt is to be sent as the next message; followUpTaken
	// is closed once the runner took it.
	followUp      bool
	followUpTaken chan struct{}

	ctl control // suspend and resume (suspend.go)
}

// New checks cfg.
func New(cfg Config) (*Supervisor, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Supervisor{cfg: cfg, force: make(chan struct{}), followUpTaken: make(chan struct{}), ctl: newControl()}, nil
}

// Force makes a graceful stop in progress give up waiting: the children are
// killed (the second Ctrl-C).
func (s *Supervisor) Force() { s.once.Do(func() { close(s.force) }) }

func (s *Supervisor) printf(format string, args ...any) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	// Lines quote errors and the sync's log, which may quote a URL.
	fmt.Fprint(s.cfg.Out, redact.String(fmt.Sprintf("tether: "+format+"\n", args...)))
}

// lockedWriter serializes the agent stream with the supervisor's lines.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (s *Supervisor) save() {
	if err := writeStatus(s.cfg.Workspace, &s.status); err != nil {
		s.printf("warning: cannot record the supervisor state: %v", err)
	}
}

// ws returns a path inside the workspace.
func (s *Supervisor) ws(rel string) string { return filepath.Join(s.cfg.Workspace, rel) }

// Run hydrates the workspace, starts the sync and the runner and keeps the
// runner alive until ctx is cancelled (the first Ctrl-C), the session is
// idle (ExitWhenIdle) or restarts run out. It always stops the runner first
// and then the sync, whose final snapshot it waits for. It returns nil when
// the session ended cleanly with its final snapshot.
func (s *Supervisor) Run(ctx context.Context) (err error) {
	cfg := &s.cfg
	s.status = Status{Session: cfg.Namespace + "/" + cfg.Session, Workspace: cfg.Workspace, Store: redact.URL(cfg.StoreURL),
		PID: os.Getpid(), State: StateStarting, StartedAt: time.Now().UTC(), MaxRestart: cfg.MaxRestarts, Deaths: []Death{}}
	if err := os.MkdirAll(cfg.Workspace, 0o755); err != nil {
		return fmt.Errorf("workspace %s: %w", cfg.Workspace, err)
	}
	unlock, err := lockWorkspace(cfg.Workspace)
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
		return fmt.Errorf("log directory %s: %w", cfg.LogDir, err)
	}

	// Hydrate in-process: it must finish before anything touches the
	// workspace, and its failure stops everything.
	hr, err := s.hydrate(ctx)
	if err != nil {
		return err
	}
	s.status.Hydrate = hr.Outcome
	if prev, err := ReadStatus(cfg.Workspace); err == nil {
		// Earlier runs' deaths stay on record (the newest 100).
		s.status.Deaths = append(s.status.Deaths, prev.Deaths[max(0, len(prev.Deaths)-100):]...)
	}

	jail, why, err := NewJail(cfg.MemoryMode, cfg.Session, cfg.MemoryLimit)
	if err != nil {
		return err
	}
	s.jail = jail
	defer func() {
		if cerr := jail.Close(); cerr != nil {
			s.printf("warning: %v", cerr)
		}
	}()
	if jail.Mode() == ModeWatchdog {
		s.printf("WARNING: no writable memory cgroup (%v)", why)
	}
	s.printf("%s", jail.Describe())
	s.status.Memory = MemoryStatus{Mode: jail.Mode(), Detail: jail.Describe(), Limit: cfg.MemoryLimit, Max: cfg.MemoryMax, Bump: cfg.OOMBump}

	s.tail = newEventTail(s.ws(runner.EventLogFile), lockedWriter{&s.outMu, cfg.Out})
	syncLog, err := os.OpenFile(filepath.Join(cfg.LogDir, "sync.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer syncLog.Close()
	runnerLog, err := os.OpenFile(filepath.Join(cfg.LogDir, "runner.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer runnerLog.Close()
	s.printf("logs: %s", cfg.LogDir)

	env := append(withoutGitCredentials(os.Environ()), cfg.Env...)
	syncArgs := append([]string{"sync", "--workspace", cfg.Workspace, "--store", cfg.StoreURL, "--namespace", cfg.Namespace, "--session", cfg.Session}, cfg.SyncArgs...)
	var syncHealth string
	if cfg.UI != "" && !slices.Contains(syncArgs, "--listen") {
		// The page shows the age of the last snapshot: the sync's
		// /healthz, on a loopback port of its own.
		addr, err := freeLoopback()
		if err != nil {
			return err
		}
		syncArgs = append(syncArgs, "--listen", addr)
		syncHealth = "http://" + addr + "/healthz"
	}
	startSync := func() (*child, error) {
		// SIGTERM if the supervisor dies: the sync still takes its final
		// snapshot.
		c, err := startChild("sync", 0, cfg.Self, syncArgs, env, syncLog, syscall.SIGTERM, nil)
		if err == nil {
			s.status.Sync = ChildStatus{PID: c.pid, StartedAt: c.started.UTC(), Log: syncLog.Name()}
		}
		return c, err
	}
	syncC, err := startSync()
	if err != nil {
		return err
	}
	defer func() {
		// Always the last step: the final snapshot after the runner is down.
		if serr := s.stopSync(syncC); serr != nil && err == nil {
			err = serr
		}
		if err != nil {
			// The status file is in the workspace, so in the store too.
			s.status.State, s.status.Error = StateFailed, redact.String(err.Error())
		} else {
			s.status.State = StateStopped
		}
		s.save()
	}()

	runnerArgs := append([]string{"runner", "--workspace", cfg.Workspace}, cfg.RunnerArgs...)
	runnerEnv := append(env[:len(env):len(env)], cfg.RunnerEnv...)
	followUp, err := s.promptArgs(&runnerArgs)
	if err != nil {
		return err
	}
	if cfg.Input != nil || followUp != "" || cfg.UI != "" {
		api, args, env, err := setupInput(cfg.Listen)
		if err != nil {
			return err
		}
		runnerArgs = append(runnerArgs, args...)
		runnerEnv = append(runnerEnv, env...)
		if cfg.UI != "" {
			b := &uiBackend{name: cfg.Session, namespace: cfg.Namespace, workspace: cfg.Workspace, storeURL: cfg.StoreURL, sup: s, agent: "claude", api: api, syncHealth: syncHealth, hc: &http.Client{}}
			addr, err := s.startUI(ctx, cfg.UI, b)
			if err != nil {
				return err
			}
			s.printf("web page: http://%s/", addr)
			if cfg.OnUI != nil {
				cfg.OnUI(addr)
			}
		}
		inCtx, cancelIn := context.WithCancel(ctx)
		defer cancelIn()
		in := cfg.Input
		if followUp != "" {
			// The new prompt goes first, as one message (it may span lines).
			s.followUp = true
			go s.sendFollowUp(inCtx, followUp, api, in)
		} else if in != nil {
			go s.readInput(inCtx, in, api)
		}
		if cfg.Input != nil {
			s.printf("type a message and press Enter to send it to the agent; Ctrl-C stops")
		}
	} else if cfg.Listen != "" {
		runnerArgs = append(runnerArgs, "--listen", cfg.Listen)
	}
	limit := cfg.MemoryLimit
	consecutive := 0
	resumed := false // this life follows a suspend, not a death
	for life := 1; ; life++ {
		rc, err := startChild("runner", life, cfg.Self, runnerArgs, runnerEnv, runnerLog, syscall.SIGKILL, jail)
		if err != nil {
			return err
		}
		oomCh := jail.Begin(rc.pid)
		s.status.Runner = ChildStatus{PID: rc.pid, Life: life, StartedAt: rc.started.UTC(), Log: runnerLog.Name()}
		s.status.State = StateRunning
		if n := len(s.status.Deaths); n > 0 && s.status.Deaths[n-1].Supervisor == os.Getpid() && !resumed {
			t := rc.started.UTC()
			s.status.Deaths[n-1].RestartedAt = &t
		}
		s.save()
		switch {
		case resumed:
			s.printf("runner started again (life %d, pid %d): the session is resumed", life, rc.pid)
		case life > 1:
			s.printf("runner restarted (life %d, pid %d, memory limit %s)", life, rc.pid, FormatSize(limit))
		}
		resumed = false

		stopping, why, syncDied := s.watchLife(ctx, rc, oomCh, &syncC, startSync)
		if syncDied != nil {
			return syncDied
		}
		ev, kerr := jail.End()
		if kerr != nil {
			s.printf("warning: %v", kerr)
		}
		if stopping && ev == nil && why == whySuspended {
			// Not a death: the session waits, whole, for Resume.
			s.requestSuspendSnapshot()
			drain(s.ctl.resumeC)
			s.ctl.suspended.Store(true)
			s.status.State = StateSuspended
			s.save()
			s.printf("session suspended: the runner is stopped and a snapshot requested; resume it from the web page")
			select {
			case <-s.ctl.resumeC:
				s.ctl.suspended.Store(false)
				resumed = true
				continue
			case <-ctx.Done():
				s.ctl.suspended.Store(false)
				s.printf("runner stopped (interrupted while suspended)")
				return nil
			}
		}
		if stopping && ev == nil {
			s.printf("runner stopped (%s)", why)
			return nil
		}

		d := s.classify(rc, ev, limit)
		// The sync snapshots now: what the dead runner left is on disk
		// (transcript, repos, files), and a machine loss next must not lose it.
		d.SnapshotRequestedAt = time.Now().UTC()
		s.requestSnapshot(d)
		if rc.started.Add(cfg.StableAfter).Before(time.Now()) {
			consecutive = 0
		}
		consecutive++
		switch {
		case stopping:
			d.GiveUp = "the session was stopping"
		case d.ExitCode != nil && (*d.ExitCode == 2 || *d.ExitCode == exitJoinFailed):
			d.GiveUp = fmt.Sprintf("the runner exited %d, which means it cannot start as configured (see %s)", *d.ExitCode, runnerLog.Name())
		case s.status.Restarts >= cfg.MaxRestarts:
			d.GiveUp = fmt.Sprintf("--max-restarts %d reached", cfg.MaxRestarts)
		case cfg.OnDeath != nil && !cfg.OnDeath(d):
			d.GiveUp = "stopped by the caller after this death"
		default:
			d.Restart = true
			d.BackoffMs = Backoff(cfg.BackoffBase, cfg.BackoffMax, consecutive).Milliseconds()
			if d.Cause == CauseOOMKernel || d.Cause == CauseOOMWatchdog {
				if next := BumpLimit(limit, cfg.OOMBump, cfg.MemoryMax); next != limit {
					if err := jail.SetLimit(next); err != nil {
						s.printf("warning: cannot raise the memory limit to %s: %v", FormatSize(next), err)
					} else {
						limit = next
					}
				}
			}
			d.NextMemoryLimit = limit
		}
		s.status.Deaths = append(s.status.Deaths, d)
		s.status.Memory.Limit = limit
		s.report(d)
		if !d.Restart {
			s.save()
			if stopping || d.GiveUp == "stopped by the caller after this death" {
				return nil
			}
			return fmt.Errorf("runner of session %s died (%s) and will not be restarted: %s; the workspace and its snapshots are intact, run `tether run` again to continue", s.status.Session, d.short(), d.GiveUp)
		}
		s.status.Restarts++
		s.status.State = StateRestarting
		s.save()
		select {
		case <-time.After(time.Duration(d.BackoffMs) * time.Millisecond):
		case <-ctx.Done():
			s.printf("not restarting the runner: stopping")
			return nil
		}
	}
}

// watchLife waits until the runner's life ends. It renders the agent's
// stream, notes the recovery of the previous death, restarts a sync that
// died, and stops the runner on ctx or when the session is idle.
func (s *Supervisor) watchLife(ctx context.Context, rc *child, oomCh <-chan OOMEvent, syncC **child, startSync func() (*child, error)) (stopping bool, why string, fatal error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var idleSince time.Time
	ready := false
	stop := func(reason string) {
		stopping, why = true, reason
		s.status.State = StateStopping
		s.save()
		s.printf("stopping the runner (%s)...", reason)
		rc.signal(syscall.SIGTERM)
		if !rc.wait(s.cfg.RunnerStopTimeout, s.force) {
			s.printf("the runner did not stop in %s; killing it", s.cfg.RunnerStopTimeout)
			rc.signal(syscall.SIGKILL)
			<-rc.done
		}
	}
	ctxDone := ctx.Done()
	drain(s.ctl.suspendC)
	s.ctl.live.Store(true)
	defer s.ctl.live.Store(false)
	for {
		select {
		case <-rc.done:
			s.tail.poll()
			return
		case <-s.ctl.suspendC:
			stop("suspend asked for")
			s.tail.poll()
			return true, whySuspended, nil
		case ev := <-oomCh:
			s.printf("OOM: %s; killed the runner's whole group in %d ms", ev.Detail, ev.KilledAt.Sub(ev.At).Milliseconds())
		case <-ctxDone:
			ctxDone = nil
			stop("interrupted")
		case <-(*syncC).done:
			old := *syncC
			if line, ok := syncFenced(old); ok { // another writer owns the session now (fenced.go)
				s.printf("the session was taken over: %s; stopping the agent here", line)
				stop("the session was taken over by another writer")
				return true, "fenced", fencedError(s.status.Session, line)
			}
			_, sig, code := describeExit(old.state)
			s.printf("the sync exited unexpectedly (%s%s; last log line: %s); restarting it", sig, codeString(code), old.tail.LastLine())
			time.Sleep(time.Second)
			c, err := startSync()
			if err != nil {
				rc.signal(syscall.SIGKILL)
				<-rc.done
				return true, "sync failed", err
			}
			*syncC = c
		case <-tick.C:
			s.tail.poll()
			st, ok := readRunnerStatus(s.cfg.Workspace)
			if !ok || st.RunnerPID != rc.pid {
				continue
			}
			if !ready && (st.State == runner.StateReady) {
				ready = true
				s.noteReady(st)
			}
			if s.cfg.ExitWhenIdle && ready && st.State == runner.StateReady && !st.TurnOpen && s.tail.idle() && s.promptDelivered() && s.followUpDone() {
				if idleSince.IsZero() {
					idleSince = time.Now()
				} else if time.Since(idleSince) >= 500*time.Millisecond {
					stop("the agent finished the prompt")
					s.tail.poll()
					return
				}
			} else {
				idleSince = time.Time{}
			}
		}
	}
}

func codeString(code *int) string {
	if code == nil {
		return ""
	}
	return "exit status " + strconv.Itoa(*code)
}

func (s *Supervisor) followUpDone() bool {
	if !s.followUp {
		return true
	}
	select {
	case <-s.followUpTaken:
		return true
	default:
		return false
	}
}

// promptArgs decides, after hydrate, what to do with cfg.Prompt: hand it to
// the runner as the initial prompt (a new session), drop it (this session
// already had exactly this prompt: the same command run again after a
// crash), or return it to be sent as the next message.
func (s *Supervisor) promptArgs(args *[]string) (followUp string, err error) {
	p := s.cfg.Prompt
	if p == "" {
		return "", nil
	}
	if !s.promptDelivered() {
		if len(p) <= 64<<10 {
			*args = append(*args, "--prompt", p)
			return "", nil
		}
		// Linux refuses a single argument over 128 KiB.
		f := filepath.Join(s.cfg.LogDir, "prompt.txt")
		if err := os.WriteFile(f, []byte(p), 0o600); err != nil {
			return "", err
		}
		*args = append(*args, "--prompt-file", f)
		return "", nil
	}
	for _, rec := range readEventLog(s.ws(runner.EventLogFile)) {
		if rec.Kind == runner.KindInput && rec.Type == runner.SourceInitial {
			var d struct{ Text string }
			json.Unmarshal(rec.Data, &d)
			if d.Text == p {
				s.printf("this session already had this prompt; continuing the conversation without sending it again")
				return "", nil
			}
		}
	}
	s.printf("this session already had its initial prompt; sending --prompt as the next message")
	return p, nil
}

func (s *Supervisor) promptDelivered() bool {
	_, err := os.Stat(s.ws(runner.InitialPromptMarker))
	return err == nil
}

func readRunnerStatus(workspace string) (runner.Status, bool) {
	var st runner.Status
	b, err := os.ReadFile(filepath.Join(workspace, runner.StatusFile))
	if err != nil || json.Unmarshal(b, &st) != nil {
		return st, false
	}
	return st, true
}

// noteReady records the recovery of the last death once the new runner is
// up with its resume decided.
func (s *Supervisor) noteReady(st runner.Status) {
	if s.cfg.OnReady != nil {
		s.cfg.OnReady(st)
	}
	n := len(s.status.Deaths)
	if n == 0 || s.status.Deaths[n-1].RecoveredAt != nil || s.status.Deaths[n-1].Supervisor != os.Getpid() {
		return
	}
	d := &s.status.Deaths[n-1]
	now := time.Now().UTC()
	d.RecoveredAt, d.RecoveryMs = &now, now.Sub(d.DiedAt).Milliseconds()
	d.Resume, d.SessionIDAfter = st.Resume.Outcome, st.SessionID
	s.save()
	switch st.Resume.Outcome {
	case runner.ResumeResumed:
		same := "same session"
		if st.SessionID != d.SessionID && d.SessionID != "" {
			same = "continued under a new id " + st.SessionID
		}
		s.printf("recovered %d ms after the death: CLI session %s resumed (%s)", d.RecoveryMs, d.SessionID, same)
	case runner.ResumeFailed:
		s.printf("runner back %d ms after the death, but RESUME FAILED (%s): a new CLI session was seeded with a recap", d.RecoveryMs, st.Resume.Reason)
	default:
		s.printf("runner back %d ms after the death (no session id was known yet: fresh CLI session)", d.RecoveryMs)
	}
}

// classify turns a runner's end into a Death.
func (s *Supervisor) classify(rc *child, ev *OOMEvent, limit int64) Death {
	d := Death{Supervisor: os.Getpid(), Life: rc.life, PID: rc.pid, StartedAt: rc.started.UTC(), MemoryLimit: limit, MemoryPeak: s.jail.Peak()}
	diedAt := time.Now()
	cause, sig, code := describeExit(rc.state)
	d.Signal, d.ExitCode = sig, code
	switch {
	case ev != nil:
		d.Cause = CauseOOMKernel
		if ev.By == ModeWatchdog {
			d.Cause = CauseOOMWatchdog
		}
		at, killed := ev.At.UTC(), ev.KilledAt.UTC()
		d.OOMDetectedAt, d.GroupKilledAt = &at, &killed
		d.Detail = ev.Detail
		if ev.Usage > d.MemoryPeak {
			d.MemoryPeak = ev.Usage
		}
		if at.Before(diedAt) {
			diedAt = at
		}
	default:
		d.Cause = cause
		d.Detail = rc.tail.LastLine()
	}
	d.DiedAt = diedAt.UTC()
	d.UptimeMs = diedAt.Sub(rc.started).Milliseconds()
	if st, ok := readRunnerStatus(s.cfg.Workspace); ok && st.RunnerPID == rc.pid {
		d.SessionID, d.TurnOpen = st.SessionID, st.TurnOpen
	} else if ok {
		d.SessionID = st.SessionID
	}
	return d
}

func (d Death) short() string {
	switch d.Cause {
	case CauseOOMKernel:
		return "out of memory, killed by the kernel"
	case CauseOOMWatchdog:
		return "out of memory, killed by the watchdog"
	case CauseSignal:
		return "killed by " + d.Signal
	}
	return codeString(d.ExitCode)
}

func (s *Supervisor) report(d Death) {
	turn := "between turns"
	if d.TurnOpen {
		turn = "in the middle of a turn"
	}
	s.printf("RUNNER DIED (life %d, pid %d, after %s, %s): %s — %s", d.Life, d.PID, time.Duration(d.UptimeMs)*time.Millisecond, turn, d.short(), d.Detail)
	if d.MemoryPeak > 0 {
		s.printf("  memory: peak %s of limit %s", FormatSize(d.MemoryPeak), FormatSize(d.MemoryLimit))
	}
	if d.Restart {
		bump := ""
		if d.NextMemoryLimit != d.MemoryLimit {
			bump = fmt.Sprintf(", memory limit raised to %s", FormatSize(d.NextMemoryLimit))
		}
		s.printf("  snapshot requested; restarting in %d ms (restart %d of at most %d%s)", d.BackoffMs, s.status.Restarts+1, s.cfg.MaxRestarts, bump)
	} else {
		s.printf("  snapshot requested; not restarting: %s", d.GiveUp)
	}
}

// requestSnapshot asks the sync for a snapshot now, the way the runner does:
// SnapshotRequestFile rewritten atomically.
func (s *Supervisor) requestSnapshot(d Death) {
	data, _ := json.Marshal(map[string]any{"reason": "runner-died", "cause": d.Cause, "life": d.Life, "session_id": d.SessionID, "time": time.Now().UTC()})
	if err := fsutil.WriteFileAtomic(s.ws(statesync.SnapshotRequestFile), append(data, '\n'), 0o644); err != nil {
		s.printf("warning: cannot ask the sync for a snapshot: %v", err)
	}
}

// stopSync sends SIGTERM and waits for the final snapshot.
func (s *Supervisor) stopSync(c *child) error {
	s.printf("waiting for the final snapshot...")
	start := time.Now()
	c.signal(syscall.SIGTERM)
	if !c.wait(s.cfg.SyncStopTimeout, s.force) {
		c.signal(syscall.SIGKILL)
		<-c.done
		killSession(c.pid, 2*time.Second)
		return fmt.Errorf("the final snapshot did not complete (sync killed after %s); the previous snapshot is intact, and the workspace still holds everything", time.Since(start).Round(time.Millisecond))
	}
	killSession(c.pid, 2*time.Second)
	if line, ok := syncFenced(c); ok {
		return fencedError(s.status.Session, line)
	}
	if !c.state.Success() {
		_, sig, code := describeExit(c.state)
		return fmt.Errorf("the final snapshot failed (sync %s%s: %s); the workspace still holds everything, see %s", sig, codeString(code), c.tail.LastLine(), s.status.Sync.Log)
	}
	s.printf("final snapshot done in %d ms", time.Since(start).Milliseconds())
	return nil
}

// hydrate opens the store and restores the newest snapshot when the
// workspace is new here.
func (s *Supervisor) hydrate(ctx context.Context) (*statesync.HydrateResult, error) {
	st, err := store.Open(ctx, s.cfg.StoreURL)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	repo, err := snapshot.OpenRepo(store.WithRetry(st, store.RetryOptions{}), s.cfg.Namespace, s.cfg.Session)
	if err != nil {
		return nil, err
	}
	w := redact.Writer(lockedWriter{&s.outMu, s.cfg.Out})
	return statesync.HydrateWith(ctx, repo, s.cfg.Workspace, statesync.HydrateOptions{Repos: s.cfg.Repos, Progress: prefixWriter{w, "tether: "}, KeepSetuid: s.cfg.KeepSetuid})
}

// withoutGitCredentials drops the git token hydrate's clone used (see
// statesync.EnvGitToken) from the children's environment: the sync never
// needs it, and whatever the agent's tools print of their environment ends
// up in a transcript, so in the store.
func withoutGitCredentials(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case statesync.EnvGitToken, statesync.EnvGitTokenFile:
			continue
		}
		out = append(out, kv)
	}
	return out
}

// prefixWriter prefixes each write (hydrate prints whole lines).
type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	if _, err := p.w.Write(append([]byte(p.prefix), b...)); err != nil {
		return 0, err
	}
	return len(b), nil
}

// lockWorkspace takes an exclusive lock on the workspace directory itself
// (no file is created: hydrate needs an empty directory to restore into), so
// two supervisors never run one workspace: two runners would fight over the
// CLI session.
func lockWorkspace(dir string) (func(), error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("workspace %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another `tether run` is supervising workspace %s; stop it first", dir)
		}
		return nil, fmt.Errorf("lock workspace %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}
