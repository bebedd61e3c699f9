package faults

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/store/storetest"
)

func TestMain(m *testing.M) {
	if code, ok := ChildMain(); ok {
		os.Exit(code)
	}
	ReapStale()
	code := m.Run()
	if sharedEnv != nil {
		sharedEnv.Close()
	}
	os.Exit(code)
}

var (
	envOnce   sync.Once
	sharedEnv *Env
	envErr    error
)

// env builds the binaries once for all the tests of the process.
func env(t *testing.T) *Env {
	t.Helper()
	envOnce.Do(func() { sharedEnv, envErr = NewEnv() })
	if envErr != nil {
		t.Fatal(envErr)
	}
	return sharedEnv
}

// Sizes of the tmpfs mounts of the tests: room for a session's workspace
// and store with margin, small enough to fill in a moment.
const testTmpfs = 32 << 20

// need skips (fails with CI=true) when this machine cannot run a fault: it
// needs root for the unprivileged sync user and for tmpfs mounts.
func need(t *testing.T, what string, ok bool) {
	t.Helper()
	if ok {
		return
	}
	msg := "!!! SKIPPING: " + what
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func canMount(t *testing.T) bool {
	dir := filepath.Join(t.TempDir(), "probe")
	if err := MountTmpfs(dir, 1<<20); err != nil {
		t.Logf("tmpfs mounts are not permitted here: %v", err)
		return false
	}
	return Unmount(dir) == nil
}

func minioInstalled() bool {
	_, err := os.Stat(storetest.MinioBinary())
	return err == nil
}

// startMinio starts a MinIO server of the test's own, with its data in the
// test's temporary directory: minio-killed faults kill it.
func startMinio(t *testing.T) *storetest.MinioServer {
	t.Helper()
	storetest.UseTestCredentials()
	m, err := storetest.StartMinio(t.TempDir())
	if err != nil {
		t.Fatalf("start MinIO: %v", err)
	}
	t.Cleanup(m.Stop)
	return m
}

// scenario is one session run in a goroutine; its subtest reports it.
type scenario struct {
	name string
	cfg  SessionConfig
	plan []Step
	skip string
	done chan SessionReport
	logs logBuffer
}

type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuffer) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
}

// sessionSlots bounds the sessions that run at once across the tests of the
// process (FAULTS_PARALLEL, default 5). Each session is a sync saving every
// 1.5 s next to a writer that commits twice a second, with a dozen git
// processes per save, and starting a process is what this kind of machine
// does slowest: all nine at once on 2 cores measured the machine more than
// the sync (saves of 1.2-1.8 s instead of 0.2 s, the newest snapshot up to
// 5.5 s old), five at once keep the newest snapshot under 3 s old and take
// 40 s longer in all (the 120 s outage runs the whole time in one slot
// while the others turn over).
var sessionSlots = make(chan struct{}, parallelSessions())

func parallelSessions() int {
	if n, err := strconv.Atoi(os.Getenv("FAULTS_PARALLEL")); err == nil && n > 0 {
		return n
	}
	return 5
}

// planned is how long a plan runs at least: each fault's hold and the
// settling after it.
func planned(plan []Step) time.Duration {
	var d time.Duration
	for _, st := range plan {
		d += st.Hold + settle
	}
	return d
}

// runScenarios runs the scenarios (FAULTS_CASES=name,... picks some, while
// developing) in goroutines, the longest plans first, at most
// sessionSlots at once (t.Parallel would tie that to GOMAXPROCS, and they
// only wait most of the time), then reports each in its own subtest.
func runScenarios(t *testing.T, env *Env, scs []*scenario) {
	order := append([]*scenario(nil), scs...)
	sort.SliceStable(order, func(i, j int) bool { return planned(order[i].plan) > planned(order[j].plan) })
	only := map[string]bool{}
	for _, n := range strings.Split(os.Getenv("FAULTS_CASES"), ",") {
		if n != "" {
			only[n] = true
		}
	}
	for _, sc := range order {
		sc.done = make(chan SessionReport, 1)
		if len(only) > 0 && !only[sc.name] && sc.skip == "" {
			sc.skip = "not in FAULTS_CASES"
		}
		if sc.skip != "" {
			close(sc.done)
			continue
		}
		go func() {
			sessionSlots <- struct{}{}
			defer func() { <-sessionSlots }()
			sc.done <- RunPlan(t, env, sc.cfg, Steps(sc.plan...), func() time.Duration { return time.Second }, sc.logs.logf)
		}()
	}
	for _, sc := range scs {
		t.Run(sc.name, func(t *testing.T) {
			rep, ok := <-sc.done
			if !ok {
				if sc.skip == "not in FAULTS_CASES" {
					t.Skip(sc.skip)
				}
				need(t, sc.skip, false)
				return
			}
			sc.logs.mu.Lock()
			for _, l := range sc.logs.lines {
				t.Log(l)
			}
			sc.logs.mu.Unlock()
			for _, r := range rep.Results {
				for _, e := range r.Errs {
					t.Error(e)
				}
			}
			for _, e := range rep.Errs {
				t.Error(e)
			}
			if len(rep.Results) < len(sc.plan) {
				t.Errorf("only %d of %d faults ran", len(rep.Results), len(sc.plan))
			}
		})
	}
}

// TestOutageRecovery is the acceptance test of the sync loop under store
// outages: the store unavailable for 3 s, 30 s and 120 s in each of three
// ways (the file:// store unwritable for the sync's user, MinIO killed and
// restarted, the store's file system full) while the writer keeps writing;
// after each, a snapshot must start within the backoff cap plus one save,
// hold every write made during the outage, and the session must end with a
// final snapshot holding every write. `make test` runs the 3 s and 30 s
// cases of every way and the 120 s case of one; FAULTS_LONG=1 runs all.
func TestOutageRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs tether sync next to a writer for minutes")
	}
	t.Parallel()
	root := os.Geteuid() == 0
	mount := root && canMount(t)
	long := os.Getenv("FAULTS_LONG") != ""
	env := env(t)
	var scs []*scenario
	for _, way := range []Kind{FileUnwritable, MinioKilled, StoreFull} {
		for _, d := range []time.Duration{3 * time.Second, 30 * time.Second, 120 * time.Second} {
			if d == 120*time.Second && way != FileUnwritable && !long {
				continue
			}
			name := strings.ToLower(string(way) + "-" + strconv.Itoa(int(d.Seconds())) + "s")
			sc := &scenario{name: name, plan: []Step{{way, d}}, cfg: SessionConfig{Name: name, Store: FileStore}}
			switch way {
			case StoreFull:
				sc.cfg.StoreTmpfs = testTmpfs
				if !mount {
					sc.skip = "store-full needs a tmpfs mount (root with CAP_SYS_ADMIN)"
				}
			case MinioKilled:
				sc.cfg.Store = MinioStore
				if !minioInstalled() {
					sc.skip = "MinIO is not installed: run hack/install-minio.sh (" + storetest.MinioBinary() + ")"
				} else {
					sc.cfg.Minio = startMinio(t)
				}
			}
			scs = append(scs, sc)
		}
	}
	runScenarios(t, env, scs)
}

// TestFaultMix is the short version of the campaign: each of the other
// faults once on the target it applies to (latency, 5xx bursts and lost
// acks through the proxy in front of MinIO, a full workspace disk, SIGSTOP
// of the sync), with the same checks after each.
func TestFaultMix(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs tether sync next to a writer for minutes")
	}
	t.Parallel()
	mount := os.Geteuid() == 0 && canMount(t)
	env := env(t)
	file := &scenario{name: "file", cfg: SessionConfig{Name: "mix-file", Store: FileStore},
		plan: []Step{{SigStop, 4 * time.Second}, {FileUnwritable, 2 * time.Second}}}
	if mount {
		file.cfg.StoreTmpfs, file.cfg.WorkspaceTmpfs = testTmpfs, testTmpfs
		file.plan = append(file.plan, Step{WorkspaceFull, 4 * time.Second}, Step{StoreFull, 2 * time.Second})
	} else {
		file.skip = "workspace-full and store-full need tmpfs mounts (root with CAP_SYS_ADMIN)"
	}
	s3 := &scenario{name: "minio", plan: []Step{{Latency, 5 * time.Second}, {Errors5xx, 4 * time.Second}, {LostAcks, 6 * time.Second}, {SigStop, 3 * time.Second}, {MinioKilled, 2 * time.Second}}}
	if minioInstalled() {
		s3.cfg = SessionConfig{Name: "mix-minio", Store: MinioStore, Minio: startMinio(t), Proxy: true}
		if mount {
			s3.cfg.WorkspaceTmpfs = testTmpfs
			s3.plan = append(s3.plan, Step{WorkspaceFull, 3 * time.Second})
		}
	} else {
		s3.skip = "MinIO is not installed: run hack/install-minio.sh (" + storetest.MinioBinary() + ")"
	}
	runScenarios(t, env, []*scenario{file, s3})
}

// TestCampaign is `make faults`: FAULTS_DURATION of random faults (at
// least 30 minutes for the published figures) against a real MinIO and a
// file:// store; it prints the table and, with FAULTS_REPORT=path, writes
// the report (docs/faults.md).
func TestCampaign(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("FAULTS_DURATION"))
	if err != nil || d <= 0 {
		t.Skip("set FAULTS_DURATION (e.g. 30m) to run the fault campaign; `make faults` does")
	}
	need(t, "the campaign needs root (the unprivileged sync user, tmpfs mounts)", os.Geteuid() == 0 && canMount(t))
	env := env(t)
	cfg := CampaignConfig{Duration: d, SessionLife: 5 * time.Minute, Seed: uint64(time.Now().UnixNano()), Tmpfs: 64 << 20}
	if v, err := time.ParseDuration(os.Getenv("FAULTS_SESSION")); err == nil && v > 0 {
		cfg.SessionLife = v
	}
	if v, err := strconv.ParseUint(os.Getenv("FAULTS_SEED"), 10, 64); err == nil {
		cfg.Seed = v
	}
	switch {
	case minioInstalled():
		cfg.Minio = startMinio(t)
	case os.Getenv("CI") == "true":
		t.Fatalf("MinIO is not installed (%s): run hack/install-minio.sh", storetest.MinioBinary())
	default:
		t.Logf("!!! MinIO is not installed (%s): the campaign runs on the file:// store only, and its report says so", storetest.MinioBinary())
	}
	c := RunCampaign(t, env, cfg, t.Logf)
	table := c.Table()
	t.Log("\n" + table)
	os.Stdout.WriteString(table)
	if p := os.Getenv("FAULTS_REPORT"); p != "" {
		if err := c.WriteReport(p); err != nil {
			t.Errorf("write the report: %v", err)
		} else {
			t.Logf("wrote %s", p)
		}
	}
	for _, e := range c.Errors() {
		t.Error(e)
	}
}
