package faults

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/store/storetest"
)

// Step is one fault of a plan and how long it is held.
type Step struct {
	Kind Kind
	Hold time.Duration
}

// SessionReport is what one session of a campaign did.
type SessionReport struct {
	Name           string
	Target         string
	Results        []Result
	Writes         int // writes the writer made in the session
	LostAtEnd      int // writes the final snapshot lacks (must be 0)
	WriterRestarts int
	Errs           []string
}

// Steps hands out a fixed list of steps.
func Steps(steps ...Step) func() (Step, bool) {
	return func() (Step, bool) {
		if len(steps) == 0 {
			return Step{}, false
		}
		st := steps[0]
		steps = steps[1:]
		return st, true
	}
}

// RunPlan starts a session, lets it take its first snapshot, runs the steps
// next hands out one after another (each followed by its checks and a quiet
// pause drawn by pause) until it has no more, and stops the session with a
// final snapshot that must hold every write. It never calls t.Fatal, so
// that sessions can run in goroutines.
func RunPlan(tb testing.TB, env *Env, cfg SessionConfig, next func() (Step, bool), pause func() time.Duration, logf func(string, ...any)) SessionReport {
	rep := SessionReport{Name: cfg.Name, Target: string(cfg.Store)}
	s, err := StartSession(tb, env, cfg)
	if err != nil {
		rep.Errs = append(rep.Errs, fmt.Sprintf("start session %s: %v", cfg.Name, err))
		return rep
	}
	if _, err := s.WaitSnapshot(s.Started, time.Minute); err != nil {
		rep.Errs = append(rep.Errs, fmt.Sprintf("session %s: first snapshot: %v", cfg.Name, err))
		return rep
	}
	time.Sleep(2 * time.Second) // some writes and saves before the first fault
	for {
		st, ok := next()
		if !ok {
			break
		}
		r := s.RunFault(st.Kind, st.Hold)
		logf("%s: %s held %s: recovered in %s (first good snapshot %s), then the newest snapshot at most %s old; %d writes checked, %d lost beyond the window; windows %s%s",
			cfg.Name, st.Kind, st.Hold.Round(time.Millisecond), r.Recovery.Round(time.Millisecond), r.FirstGood, r.Stalest.Round(time.Millisecond), r.Checked,
			len(r.LostBeyondWindow), fmtWindows(r.Windows), failNote(r.Errs))
		rep.Results = append(rep.Results, r)
		if err := s.SyncAlive(); err != nil || !r.Recovered {
			// A sync that is gone or stalled fails every later step the
			// same way; stop here with what was found.
			break
		}
		if pause != nil {
			time.Sleep(pause())
		}
	}
	missing, total, err := s.Stop()
	rep.Writes, rep.LostAtEnd, rep.WriterRestarts = total, len(missing), s.WriterRestarts()
	if err != nil {
		rep.Errs = append(rep.Errs, fmt.Sprintf("session %s: stop: %v", cfg.Name, err))
	} else if len(missing) > 0 {
		rep.Errs = append(rep.Errs, fmt.Sprintf("session %s: the final snapshot lacks %d of %d writes, the first: %s", cfg.Name, len(missing), total, describe(missing, time.Now())))
	}
	logf("%s: stopped: %d writes, %d missing from the final snapshot, writer restarted %d times", cfg.Name, total, len(missing), rep.WriterRestarts)
	return rep
}

func fmtWindows(w map[string]time.Duration) string {
	var parts []string
	for _, k := range []string{"T", "S", "R", "C"} {
		if d, ok := w[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %s", k, d.Round(time.Millisecond)))
		}
	}
	return strings.Join(parts, ", ")
}

func failNote(errs []string) string {
	if len(errs) == 0 {
		return ""
	}
	return "; FAILED: " + strings.Join(errs, "; ")
}

// CampaignConfig is a long run of random faults.
type CampaignConfig struct {
	Duration    time.Duration // total time of faults
	SessionLife time.Duration // a session ends after this and a new one starts
	Seed        uint64
	// Minio, when set, adds a target on it behind a fault proxy.
	Minio *storetest.MinioServer
	// Tmpfs is the size of the store and workspace tmpfs mounts (0: no
	// mounts, so no store-full or workspace-full faults).
	Tmpfs int64
}

// Campaign is what a campaign found.
type Campaign struct {
	Config   CampaignConfig
	Started  time.Time
	Wall     time.Duration
	Sessions []SessionReport
}

// hold draws how long a fault of kind k lasts: store outages from 1 s to
// 2 min (log-uniform, so short and long ones both come up often), the
// others shorter.
func hold(k Kind, rng *rand.Rand) time.Duration {
	lo, hi := time.Second, 20*time.Second
	switch k {
	case FileUnwritable, StoreFull, MinioKilled:
		hi = 2 * time.Minute
	case Errors5xx, LostAcks:
		hi = 30 * time.Second
	case SigStop:
		hi = time.Minute
	}
	f := math.Log(float64(lo)) + rng.Float64()*(math.Log(float64(hi))-math.Log(float64(lo)))
	return time.Duration(math.Exp(f)).Round(100 * time.Millisecond)
}

// RunCampaign runs random faults for cfg.Duration on two targets at once (a
// file:// store and, with cfg.Minio, MinIO behind the fault proxy), each as
// a series of sessions of cfg.SessionLife.
func RunCampaign(tb testing.TB, env *Env, cfg CampaignConfig, logf func(string, ...any)) *Campaign {
	c := &Campaign{Config: cfg, Started: time.Now()}
	deadline := c.Started.Add(cfg.Duration)
	targets := []SessionConfig{{Store: FileStore, StoreTmpfs: cfg.Tmpfs, WorkspaceTmpfs: cfg.Tmpfs}}
	if cfg.Minio != nil {
		targets = append(targets, SessionConfig{Store: MinioStore, Minio: cfg.Minio, Proxy: true, WorkspaceTmpfs: cfg.Tmpfs})
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for ti, target := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(ti)))
			for n := 1; time.Now().Before(deadline); n++ {
				sc := target
				sc.Name = fmt.Sprintf("campaign-%s-%d", target.Store, n)
				end := time.Now().Add(cfg.SessionLife)
				if end.After(deadline) {
					end = deadline
				}
				kinds := kindsOf(sc)
				// A step starts only while the session and the campaign
				// have time left.
				next := func() (Step, bool) {
					if !time.Now().Before(end) {
						return Step{}, false
					}
					k := kinds[rng.IntN(len(kinds))]
					return Step{k, hold(k, rng)}, true
				}
				pause := func() time.Duration { return time.Duration(2+rng.IntN(9)) * time.Second }
				rep := RunPlan(tb, env, sc, next, pause, logf)
				mu.Lock()
				c.Sessions = append(c.Sessions, rep)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	c.Wall = time.Since(c.Started)
	return c
}

// kindsOf lists the faults a session of cfg can take, as Session.Kinds does
// for a running one.
func kindsOf(cfg SessionConfig) []Kind {
	s := &Session{cfg: cfg}
	if cfg.Proxy {
		s.proxy = &Proxy{}
	}
	return s.Kinds()
}

// KindStats summarises the faults of one kind.
type KindStats struct {
	Kind             Kind
	Injected         int
	MinHold, MaxHold time.Duration
	Recovered        int
	P50, P99, Max    time.Duration
	Slow             int           // recovered later than RecoveryBound
	MissingFirst     int           // writes missing from a first good snapshot
	Stalest          time.Duration // the newest snapshot's largest age after a recovery
	LostBeyondWd     int
	Failed           int
}

// Stats groups the campaign's results by kind, in a fixed order.
func (c *Campaign) Stats() []KindStats {
	by := map[Kind]*KindStats{}
	recov := map[Kind][]time.Duration{}
	for _, s := range c.Sessions {
		for _, r := range s.Results {
			ks := by[r.Kind]
			if ks == nil {
				ks = &KindStats{Kind: r.Kind, MinHold: r.Held}
				by[r.Kind] = ks
			}
			ks.Injected++
			ks.MinHold, ks.MaxHold = min(ks.MinHold, r.Held), max(ks.MaxHold, r.Held)
			if r.Recovered {
				ks.Recovered++
				recov[r.Kind] = append(recov[r.Kind], r.Recovery)
				if r.Recovery > RecoveryBound {
					ks.Slow++
				}
			}
			ks.MissingFirst += len(r.MissingFirst)
			ks.Stalest = max(ks.Stalest, r.Stalest)
			ks.LostBeyondWd += len(r.LostBeyondWindow)
			if r.Failed() {
				ks.Failed++
			}
		}
	}
	var out []KindStats
	for _, k := range []Kind{FileUnwritable, StoreFull, MinioKilled, Errors5xx, Latency, LostAcks, WorkspaceFull, SigStop} {
		if ks := by[k]; ks != nil {
			ks.P50, ks.P99, ks.Max = Percentile(recov[k], 0.5), Percentile(recov[k], 0.99), Percentile(recov[k], 1)
			out = append(out, *ks)
		}
	}
	return out
}

// Totals over every session.
func (c *Campaign) Totals() (faults, failed, writes, lostBeyondWindow, lostAtEnd int) {
	for _, s := range c.Sessions {
		writes += s.Writes
		lostAtEnd += s.LostAtEnd
		if len(s.Errs) > 0 {
			failed++
		}
		for _, r := range s.Results {
			faults++
			lostBeyondWindow += len(r.LostBeyondWindow) + len(r.MissingFirst)
			if r.Failed() {
				failed++
			}
		}
	}
	return
}

// Errors lists every failed check of the campaign.
func (c *Campaign) Errors() []string {
	var out []string
	for _, s := range c.Sessions {
		for _, r := range s.Results {
			out = append(out, r.Errs...)
		}
		out = append(out, s.Errs...)
	}
	return out
}

// Percentile is the p-quantile of ds (nearest rank); 0 when ds is empty.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(math.Ceil(float64(len(s))*p)) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// Table is the campaign's summary as aligned text.
func (c *Campaign) Table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-16s %8s %15s %9s %10s %10s %10s %6s %12s %12s\n", "fault", "injected", "held", "recovered", "p50", "p99", "max", "slow", "stalest", "lost (>win)")
	for _, ks := range c.Stats() {
		fmt.Fprintf(&b, "%-16s %8d %15s %9d %10s %10s %10s %6d %12s %12d\n", ks.Kind, ks.Injected,
			ks.MinHold.Round(100*time.Millisecond).String()+"-"+ks.MaxHold.Round(100*time.Millisecond).String(),
			ks.Recovered, ks.P50.Round(time.Millisecond), ks.P99.Round(time.Millisecond), ks.Max.Round(time.Millisecond), ks.Slow, ks.Stalest.Round(time.Millisecond), ks.LostBeyondWd+ks.MissingFirst)
	}
	faults, failed, writes, lostW, lostEnd := c.Totals()
	fmt.Fprintf(&b, "%d faults in %s over %d sessions; %d writes; lost beyond the window: %d; missing from final snapshots: %d; failed checks: %d\n",
		faults, c.Wall.Round(time.Second), len(c.Sessions), writes, lostW, lostEnd, failed)
	return b.String()
}

// WriteReport writes the campaign's report as Markdown to path.
func (c *Campaign) WriteReport(path string) error {
	var b strings.Builder
	faults, failed, writes, lostW, lostEnd := c.Totals()
	fmt.Fprintf(&b, "# Fault campaign: `tether sync` under store and workspace faults\n\n")
	fmt.Fprintf(&b, "Generated by `make faults` (`go test ./test/faults -run TestCampaign`) on %s; do not edit by hand.\n\n", c.Started.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "**Machine:** %s. The machine may have been shared with other work; recovery times carry that noise.\n\n", machine())
	fmt.Fprintf(&b, "**Run:** %s of faults (wall %s), seed %d (`FAULTS_SEED`), %d sessions of about %s each (a new session starts no fault after that), ",
		c.Config.Duration, c.Wall.Round(time.Second), c.Config.Seed, len(c.Sessions), c.Config.SessionLife)
	if c.Config.Minio != nil {
		fmt.Fprintf(&b, "on two targets at once: a `file://` store on a %d MiB tmpfs, and a real MinIO (%s) on 127.0.0.1 that the sync reaches through a fault-injecting reverse proxy.", c.Config.Tmpfs>>20, storetest.MinioVersion)
	} else {
		fmt.Fprintf(&b, "on a `file://` store on a %d MiB tmpfs only: **MinIO was not installed, so this run has no MinIO target and no proxy faults**.", c.Config.Tmpfs>>20)
	}
	fmt.Fprintf(&b, " Each session is a real `tether sync` process (built from `./cmd/tether`, default flags, run as uid %d) next to the data-loss harness's writer (`test/agentwriter`: transcript appends every 10-50 ms, the session-id file, untracked binary files and commits in `repos/app`), with the workspace on its own %d MiB tmpfs.\n\n", Unprivileged, c.Config.Tmpfs>>20)
	fmt.Fprintf(&b, "## Result\n\n")
	fmt.Fprintf(&b, "%d faults, %d writes; **writes lost beyond the %s window: %d** (goal 0); writes missing from the final snapshot of a session: %d; failed checks: %d.\n\n", faults, writes, Window, lostW, lostEnd, failed)
	fmt.Fprintf(&b, "| fault | injected | held | recovered | recovery p50 | recovery p99 | recovery max | over the bound | newest snapshot's age after recovery, max | writes lost beyond the window |\n")
	fmt.Fprintf(&b, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, ks := range c.Stats() {
		fmt.Fprintf(&b, "| %s | %d | %s to %s | %d | %s | %s | %s | %d | %s | %d |\n", ks.Kind, ks.Injected,
			ks.MinHold.Round(100*time.Millisecond), ks.MaxHold.Round(100*time.Millisecond), ks.Recovered,
			fmtDur(ks.P50), fmtDur(ks.P99), fmtDur(ks.Max), ks.Slow, fmtDur(ks.Stalest), ks.LostBeyondWd+ks.MissingFirst)
	}
	fmt.Fprintf(&b, "\n*Recovery* is the time from the moment a fault cleared (the store writable again, MinIO answering its health check, the proxy passing requests, SIGCONT sent) until the store lists a snapshot whose save started after it; the bound is %s (backoff cap %s + `--max-delay` %s + one save, %s). ", RecoveryBound, BackoffCap, MaxDelay, OneSave)
	fmt.Fprintf(&b, "The *newest snapshot's age* is followed for %s after each recovery, while the writer keeps writing: how old (since its save started) the newest snapshot in the store became, that is the data-loss window had the node died then; above %s it fails the check. Then the newest snapshot is restored and compared with the writer's log: the writes older than the %s window that it lacks are *lost beyond the window*, together with (after a store outage) any write made before the fault cleared that the first good snapshot lacks.\n\n", settle, Window, Window)
	fmt.Fprintf(&b, "## Faults\n\n")
	fmt.Fprintf(&b, "- **file-unwritable**: every directory of the `file://` store made read-only (the sync runs unprivileged, so it is refused), then made writable again.\n")
	fmt.Fprintf(&b, "- **store-full**: the store's tmpfs filled with a ballast file, then the ballast removed.\n")
	fmt.Fprintf(&b, "- **minio-killed**: MinIO SIGKILLed, then restarted on the same port and data directory.\n")
	fmt.Fprintf(&b, "- **5xx-burst**: the proxy answers every request with 500 InternalError or 503 SlowDown.\n")
	fmt.Fprintf(&b, "- **latency**: the proxy delays every request by 3 s.\n")
	fmt.Fprintf(&b, "- **lost-acks**: the proxy forwards every request and drops the answer of half the writes (the write is done, the client never hears it).\n")
	fmt.Fprintf(&b, "- **workspace-full**: the workspace's tmpfs filled (under `.cache/`, which the sync leaves out); the writer fails and is started again.\n")
	fmt.Fprintf(&b, "- **sigstop**: the sync process stopped with SIGSTOP, then continued with SIGCONT.\n\n")
	fmt.Fprintf(&b, "Store outages are held 1 s to 2 min (log-uniform), the other faults 1 s to 20-60 s; between faults the session runs undisturbed for 2-10 s. At the end of each session the writer stops, the sync gets SIGTERM and must exit 0, and its final snapshot must hold every write of the session.\n")
	if errs := c.Errors(); len(errs) > 0 {
		fmt.Fprintf(&b, "\n## Failed checks\n\n")
		for i, e := range errs {
			if i == 20 {
				fmt.Fprintf(&b, "- and %d more\n", len(errs)-20)
				break
			}
			first, _, _ := strings.Cut(e, "\n")
			fmt.Fprintf(&b, "- %s\n", first)
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func fmtDur(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// machine describes this machine in one line, for the report.
func machine() string {
	cpu, mem := "unknown CPU", "unknown"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(data), "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
		}
	}
	commit := "unknown"
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		commit = strings.TrimSpace(string(out))
	}
	return fmt.Sprintf("%s, %d cores, %s RAM, %s; tether at commit %s", cpu, runtime.NumCPU(), mem, runtime.Version(), commit)
}
