package statesync

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/fsutil"
	"github.com/tether-dev/tether/internal/snapshot"
	"github.com/tether-dev/tether/internal/store"
	"github.com/tether-dev/tether/internal/store/storetest"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	storetest.Main(m)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func openRepo(t testing.TB, url, session string) *snapshot.Repo {
	t.Helper()
	st, err := store.Open(context.Background(), url)
	must(t, err)
	t.Cleanup(func() { st.Close() })
	repo, err := snapshot.OpenRepo(st, "default", session)
	must(t, err)
	return repo
}

func testConfig(ws string) Config {
	c := Defaults()
	c.Workspace = ws
	c.Debounce = 50 * time.Millisecond
	c.MaxDelay = 300 * time.Millisecond
	c.Rescan = 2 * time.Second
	c.RepoInterval = 5 * time.Second
	c.FinalBudget = 10 * time.Second
	return c
}

func quietLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// startSync runs a Syncer until the test ends (or stop is called) and
// returns a function that stops it and returns Run's result.
func startSync(t *testing.T, cfg Config, repo *snapshot.Repo) (*Syncer, func() error) {
	t.Helper()
	s, err := New(cfg, repo, quietLog(t))
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var result error
	stopped := false
	stop := func() error {
		if !stopped {
			cancel()
			result = <-done
			s.Close()
			stopped = true
		}
		return result
	}
	t.Cleanup(func() { stop() })
	return s, stop
}

// waitFor polls until the newest snapshot satisfies ok, and returns how long it took.
func waitFor(t *testing.T, repo *snapshot.Repo, within time.Duration, what string, ok func(*snapshot.Manifest) bool) time.Duration {
	t.Helper()
	start := time.Now()
	ctx := context.Background()
	for time.Since(start) < within {
		if id, err := repo.Latest(ctx); err == nil && id != "" {
			if m, err := repo.LoadManifest(ctx, id); err == nil && ok(m) {
				return time.Since(start)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no snapshot with %s within %s", what, within)
	return 0
}

func hasFile(m *snapshot.Manifest, rel string, size int64) bool {
	for _, e := range m.Entries {
		if e.Path == rel && e.Type == snapshot.TypeFile && (size < 0 || e.Size == size) {
			return true
		}
	}
	return false
}

func TestSyncLoop(t *testing.T) {
	ws := t.TempDir()
	must(t, os.WriteFile(filepath.Join(ws, "before.txt"), []byte("written before sync started\n"), 0o644))
	repo := openRepo(t, storetest.FileURL(t.TempDir()), "loop")
	cfg := testConfig(ws)
	cfg.Debounce = 200 * time.Millisecond
	cfg.MaxDelay = time.Second
	_, stop := startSync(t, cfg, repo)

	d := waitFor(t, repo, 3*time.Second, "before.txt", func(m *snapshot.Manifest) bool { return hasFile(m, "before.txt", -1) })
	t.Logf("first snapshot %s after start", d)
	if d > time.Second {
		t.Errorf("first snapshot took %s, want under 1s", d)
	}

	// A change in a new directory is seen (the watcher adds new directories).
	must(t, os.MkdirAll(filepath.Join(ws, "new/deeper"), 0o755))
	time.Sleep(50 * time.Millisecond)
	must(t, os.WriteFile(filepath.Join(ws, "new/deeper/x.txt"), []byte("x"), 0o644))
	d = waitFor(t, repo, 3*time.Second, "new/deeper/x.txt", func(m *snapshot.Manifest) bool { return hasFile(m, "new/deeper/x.txt", 1) })
	t.Logf("change in a new directory saved after %s", d)

	// A stream of changes faster than the debounce is still saved within
	// max-delay, not postponed forever.
	tr := filepath.Join(ws, "t.jsonl")
	var size int64
	deadline := time.Now().Add(2500 * time.Millisecond)
	seen := false
	for time.Now().Before(deadline) {
		f, err := os.OpenFile(tr, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		must(t, err)
		n, _ := f.WriteString(`{"line":1}` + "\n")
		f.Close()
		size += int64(n)
		time.Sleep(50 * time.Millisecond)
		if id, _ := repo.Latest(context.Background()); id != "" {
			m, err := repo.LoadManifest(context.Background(), id)
			if err == nil && hasFile(m, "t.jsonl", -1) {
				seen = true
			}
		}
	}
	if !seen {
		t.Fatal("changes every 50ms (under a 200ms debounce) were not saved within 2.5s: max-delay did not bound the wait")
	}

	must(t, stop())
}

func TestSnapshotRequestIsImmediate(t *testing.T) {
	ws := t.TempDir()
	repo := openRepo(t, storetest.FileURL(t.TempDir()), "request")
	cfg := testConfig(ws)
	cfg.Debounce = 5 * time.Second // an ordinary change would wait this long
	cfg.MaxDelay = 10 * time.Second
	_, stop := startSync(t, cfg, repo)
	waitFor(t, repo, 3*time.Second, "the first snapshot", func(*snapshot.Manifest) bool { return true })

	must(t, os.MkdirAll(filepath.Join(ws, ".tether"), 0o755))
	time.Sleep(100 * time.Millisecond) // let the watcher add .tether
	must(t, fsutil.WriteFileAtomic(filepath.Join(ws, ".tether/session-ids.json"), []byte(`{"main":"abc"}`), 0o644))
	must(t, fsutil.WriteFileAtomic(filepath.Join(ws, SnapshotRequestFile), []byte("abc\n"), 0o644))
	d := waitFor(t, repo, 3*time.Second, "session-ids.json", func(m *snapshot.Manifest) bool { return hasFile(m, ".tether/session-ids.json", -1) })
	t.Logf("requested snapshot after %s (debounce %s)", d, cfg.Debounce)
	if d > time.Second {
		t.Fatalf("requested snapshot took %s", d)
	}
	must(t, stop())
}

func TestFinalSnapshotOnStop(t *testing.T) {
	ws := t.TempDir()
	repo := openRepo(t, storetest.FileURL(t.TempDir()), "final")
	cfg := testConfig(ws)
	cfg.Debounce = time.Minute // nothing but the final snapshot will catch the change
	cfg.MaxDelay = time.Minute
	cfg.Rescan = time.Hour
	_, stop := startSync(t, cfg, repo)
	waitFor(t, repo, 3*time.Second, "the first snapshot", func(*snapshot.Manifest) bool { return true })
	must(t, os.WriteFile(filepath.Join(ws, "late.txt"), []byte("written just before SIGTERM\n"), 0o644))
	if err := stop(); err != nil {
		t.Fatalf("final snapshot: %v", err)
	}
	waitFor(t, repo, time.Second, "late.txt", func(m *snapshot.Manifest) bool { return hasFile(m, "late.txt", 28) })
}

func TestIdleWritesNothing(t *testing.T) {
	ws := t.TempDir()
	must(t, os.WriteFile(filepath.Join(ws, "a.txt"), []byte("a"), 0o644))
	repo := openRepo(t, storetest.FileURL(t.TempDir()), "idle")
	cfg := testConfig(ws)
	cfg.Rescan = 200 * time.Millisecond
	s, stop := startSync(t, cfg, repo)
	waitFor(t, repo, 3*time.Second, "the first snapshot", func(*snapshot.Manifest) bool { return true })
	time.Sleep(1500 * time.Millisecond) // several rescans
	ids, err := repo.SnapshotIDs(context.Background())
	must(t, err)
	if len(ids) != 1 {
		t.Fatalf("%d snapshots while idle, want 1", len(ids))
	}
	s.mu.Lock()
	saves := s.saves
	s.mu.Unlock()
	if saves < 3 {
		t.Fatalf("only %d rescans ran", saves)
	}
	must(t, stop())
}

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*Config)
		want   string
	}{
		{func(c *Config) { c.Debounce = 0 }, "--debounce (env TETHER_SYNC_DEBOUNCE) must be a positive duration"},
		{func(c *Config) { c.Rescan = -time.Second }, "--rescan"},
		{func(c *Config) { c.RepoInterval = 0 }, "--repo-interval"},
		{func(c *Config) { c.FinalBudget = 0 }, "--final-budget"},
		{func(c *Config) { c.MaxDelay = time.Millisecond }, "--max-delay"},
		{func(c *Config) { c.Keep = -1 }, "--keep"},
		{func(c *Config) { c.Excludes = []string{"../up"} }, "exclude pattern"},
		{func(c *Config) { c.Workspace = "" }, "--workspace"},
	} {
		c := testConfig("/tmp")
		tc.mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, tc.want)
		}
	}
}

func TestExcludes(t *testing.T) {
	m, err := NewMatcher([]string{"**/node_modules/", "build/", "*.tmp", "/logs/**"})
	must(t, err)
	for _, tc := range []struct {
		rel   string
		dir   bool
		match bool
	}{
		{"node_modules", true, true},
		{"a/b/node_modules", true, true},
		{"node_modules", false, false}, // a file of that name is not a directory
		{"build", true, true},
		{"src/build", true, false}, // anchored at the root, not at any depth
		{"x.tmp", false, true},
		{"src/x.tmp", false, false},
		{"logs/a/b.txt", false, true},
		{"catalogs/a", false, false},
	} {
		if got := m.Match(tc.rel, tc.dir); got != tc.match {
			t.Errorf("Match(%q, dir=%v) = %v, want %v", tc.rel, tc.dir, got, tc.match)
		}
	}
}

func TestSizeCapReported(t *testing.T) {
	ws := t.TempDir()
	must(t, os.WriteFile(filepath.Join(ws, "huge.bin"), make([]byte, 3<<20), 0o644))
	must(t, os.WriteFile(filepath.Join(ws, "small.txt"), []byte("kept"), 0o644))
	repo := openRepo(t, storetest.FileURL(t.TempDir()), "cap")
	cfg := testConfig(ws)
	cfg.MaxBytes = 1 << 20
	var logs strings.Builder
	s, err := New(cfg, repo, slog.New(slog.NewTextHandler(&logs, nil)))
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, repo, 3*time.Second, "small.txt", func(m *snapshot.Manifest) bool { return hasFile(m, "small.txt", 4) && !hasFile(m, "huge.bin", -1) })
	cancel()
	must(t, <-done)
	if !strings.Contains(logs.String(), "huge.bin (3145728 bytes)") || !strings.Contains(logs.String(), "over --max-size") {
		t.Fatalf("log does not name what was left out:\n%s", logs.String())
	}
	rec := httptest.NewRecorder()
	s.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "tether_sync_left_out_bytes 3.145728e+06") {
		t.Fatalf("metrics lack the left-out bytes:\n%s", rec.Body.String())
	}
	rec = httptest.NewRecorder()
	s.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "lastSnapshot") {
		t.Fatalf("/healthz: %d %s", rec.Code, rec.Body.String())
	}
}
