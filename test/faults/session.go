package faults

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/snapshot"
	"github.com/tether-dev/tether/internal/store"
	"github.com/tether-dev/tether/internal/store/storetest"
	"github.com/tether-dev/tether/test/agentwriter"
)

// childEnv selects the writer child in a re-executed test binary (ChildMain).
const childEnv = "TETHER_FAULTS_CHILD"

// ChildMain runs the writer when this process is the campaign's writer child.
// Call it first thing in TestMain; it returns false in the test process.
func ChildMain() (code int, isChild bool) {
	if os.Getenv(childEnv) != "writer" {
		return 0, false
	}
	seq := 0
	fmt.Sscanf(os.Getenv("CHILD_SEQ"), "%d", &seq)
	err := agentwriter.Run(os.Getenv("CHILD_WORKSPACE"), os.Getenv("CHILD_LOG"), seq)
	fmt.Fprintln(os.Stderr, "writer:", err)
	return 1, true
}

// Env is what the sessions of a campaign share: the tether binary and the
// writer's, both where the unprivileged user can run them.
type Env struct {
	Dir    string
	Tether string
	Writer string // a copy of the test binary; runs agentwriter (ChildMain)
}

// NewEnv builds tether from ./cmd/tether (or copies $TETHER_BIN) into a new
// directory the unprivileged user can read, with a copy of the test binary
// for the writer. Close removes it.
func NewEnv() (*Env, error) {
	dir, err := os.MkdirTemp("", "tether-faults-bin-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	e := &Env{Dir: dir, Tether: filepath.Join(dir, "tether"), Writer: filepath.Join(dir, "writer")}
	if err := e.build(); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// Close removes the binaries.
func (e *Env) Close() error { return os.RemoveAll(e.Dir) }

func (e *Env) build() error {
	if p := os.Getenv("TETHER_BIN"); p != "" {
		data, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("TETHER_BIN: %w", err)
		}
		if err := os.WriteFile(e.Tether, data, 0o755); err != nil {
			return err
		}
	} else {
		// The test runs in test/faults; the module root is two up.
		cmd := exec.Command("go", "build", "-o", e.Tether, "./cmd/tether")
		cmd.Dir = filepath.Join("..", "..")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build tether: %v\n%s", err, out)
		}
	}
	if err := copyExecutable(e.Writer); err != nil {
		return fmt.Errorf("copy the test binary for the writer: %w", err)
	}
	return nil
}

// StoreKind is where a session's snapshots go.
type StoreKind string

// The stores a session can use.
const (
	FileStore  StoreKind = "file"
	MinioStore StoreKind = "minio"
)

// SessionConfig says how to set up one session.
type SessionConfig struct {
	Name  string // session name, a DNS-1123 label
	Store StoreKind
	// Minio is the server of a MinioStore session. The session kills and
	// restarts it for minio-killed faults, so it must not be shared with
	// anything that minds.
	Minio *storetest.MinioServer
	// Proxy puts a fault proxy between the sync and MinIO (latency, 5xx,
	// lost acks).
	Proxy bool
	// StoreTmpfs puts a file store on a tmpfs of that many bytes (store-full
	// faults); WorkspaceTmpfs does the same for the workspace
	// (workspace-full faults). 0: a plain directory.
	StoreTmpfs, WorkspaceTmpfs int64
}

// Session is one `tether sync` process next to a writer, its store, and an
// observer that lists the store's snapshots as they appear.
type Session struct {
	cfg    SessionConfig
	env    *Env
	tb     testing.TB
	Root   string
	WS     string
	cache  string
	home   string
	store  string // file store directory
	mounts []string

	SyncURL    string // what the sync writes to (through the proxy, if any)
	observeURL string // what the checks read (never through the proxy)
	proxy      *Proxy
	repo       *snapshot.Repo
	Started    time.Time

	logPath, syncLog string
	syncCmd          *exec.Cmd
	syncExited       chan struct{}
	syncErr          error

	writerStop, writerDone chan struct{}
	mu                     sync.Mutex
	writerRestarts         int
	snaps                  []snapInfo
	seen                   map[string]bool
	obsStop                chan struct{}
	obsDone                chan struct{}
	obsOnce                sync.Once
	stopped                bool
}

// snapInfo is one snapshot as the observer saw it.
type snapInfo struct {
	ID   string
	Time time.Time // when its save started (manifest time)
	Seen time.Time // when the observer first listed it
}

// StartSession sets up a workspace (a git repository under repos/app, the
// writer's directories), starts the observer, the writer and `tether sync`.
// Everything it starts is stopped, and every mount unmounted, at the end of
// the test.
func StartSession(tb testing.TB, env *Env, cfg SessionConfig) (*Session, error) {
	root, err := os.MkdirTemp("", "tether-faults-"+cfg.Name+"-")
	if err != nil {
		return nil, err
	}
	s := &Session{cfg: cfg, env: env, tb: tb, Root: root, WS: filepath.Join(root, "ws"), cache: filepath.Join(root, "cache"),
		home: filepath.Join(root, "home"), logPath: filepath.Join(root, "writer.log"), syncLog: filepath.Join(root, "sync.log"),
		seen: map[string]bool{}}
	tb.Cleanup(s.cleanup)
	if err := os.Chmod(root, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(root, ownerFile), []byte(itoa(os.Getpid())), 0o644); err != nil {
		return nil, err
	}
	for _, d := range []string{s.cache, s.home} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if cfg.WorkspaceTmpfs > 0 {
		if err := MountTmpfs(s.WS, cfg.WorkspaceTmpfs); err != nil {
			return nil, err
		}
		s.mounts = append(s.mounts, s.WS)
	}
	if err := s.initWorkspace(); err != nil {
		return nil, err
	}
	switch cfg.Store {
	case FileStore:
		mnt := filepath.Join(root, "storefs")
		if cfg.StoreTmpfs > 0 {
			if err := MountTmpfs(mnt, cfg.StoreTmpfs); err != nil {
				return nil, err
			}
			s.mounts = append(s.mounts, mnt)
		}
		s.store = filepath.Join(mnt, "store")
		if err := os.MkdirAll(s.store, 0o700); err != nil {
			return nil, err
		}
		s.SyncURL = storetest.FileURL(s.store)
		s.observeURL = s.SyncURL
	case MinioStore:
		if cfg.Minio == nil {
			return nil, errors.New("a minio session needs a MinIO server")
		}
		storetest.UseTestCredentials()
		bucket := "faults-" + cfg.Name
		if err := cfg.Minio.CreateBucket(context.Background(), bucket); err != nil {
			return nil, err
		}
		s.observeURL = storetest.S3URL(cfg.Minio.Endpoint, bucket)
		s.SyncURL = s.observeURL
		if cfg.Proxy {
			if s.proxy, err = NewProxy(cfg.Minio.Endpoint); err != nil {
				return nil, err
			}
			s.SyncURL = storetest.S3URL(s.proxy.URL, bucket)
		}
	default:
		return nil, fmt.Errorf("unknown store kind %q", cfg.Store)
	}
	if err := chownToRunner(root); err != nil {
		return nil, err
	}
	st, err := store.Open(context.Background(), s.observeURL)
	if err != nil {
		return nil, err
	}
	if s.repo, err = snapshot.OpenRepo(st, "default", cfg.Name); err != nil {
		return nil, err
	}
	s.Started = time.Now()
	s.obsStop, s.obsDone = make(chan struct{}), make(chan struct{})
	go s.observe()
	s.writerStop, s.writerDone = make(chan struct{}), make(chan struct{})
	go s.superviseWriter()
	if err := s.startSync(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Session) initWorkspace() error {
	app := filepath.Join(s.WS, agentwriter.Repo)
	for _, d := range []string{app, filepath.Join(s.WS, ".tether"), filepath.Dir(filepath.Join(s.WS, agentwriter.Transcript))} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	g := exec.Command("git", "init", "-q", "-b", "main", app)
	g.Env = agentwriter.GitEnv()
	if out, err := g.CombinedOutput(); err != nil {
		return fmt.Errorf("git init %s: %v %s", app, err, out)
	}
	return nil
}

// childEnviron is this process's environment without tether's own settings
// (a TETHER_SYNC_DEBOUNCE of the developer's must not change the run), with
// HOME set to a directory the unprivileged user owns.
func (s *Session) childEnviron() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "TETHER_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+s.home)
}

func (s *Session) startSync() error {
	logf, err := os.OpenFile(s.syncLog, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(s.env.Tether, "sync", "--session", s.cfg.Name, "--namespace", "default", "--store", s.SyncURL,
		"--workspace", s.WS, "--cache-dir", s.cache)
	cmd.Env = s.childEnviron()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: runAs(), Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start tether sync: %w", err)
	}
	s.syncCmd, s.syncExited = cmd, make(chan struct{})
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.syncErr = err
		s.mu.Unlock()
		close(s.syncExited)
	}()
	return nil
}

// superviseWriter runs the writer and starts it again when it stops (it
// stops on a write error, such as a full workspace disk), continuing its
// numbering, until writerStop.
func (s *Session) superviseWriter() {
	defer close(s.writerDone)
	for {
		entries, _ := agentwriter.ReadLog(s.logPath)
		seq := 0
		for _, e := range entries {
			seq = max(seq, e.Seq)
		}
		errf, _ := os.OpenFile(filepath.Join(s.Root, "writer.err"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		cmd := exec.Command(s.env.Writer, "-test.run=^$")
		cmd.Env = append(s.childEnviron(), childEnv+"=writer", "CHILD_WORKSPACE="+s.WS, "CHILD_LOG="+s.logPath, "CHILD_SEQ="+itoa(seq))
		cmd.Stdout, cmd.Stderr = errf, errf
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: runAs(), Pdeathsig: syscall.SIGKILL}
		err := cmd.Start()
		if errf != nil {
			errf.Close()
		}
		if err == nil {
			exited := make(chan struct{})
			go func() { cmd.Wait(); close(exited) }()
			select {
			case <-s.writerStop:
				cmd.Process.Kill()
				<-exited
				return
			case <-exited:
			}
		}
		s.mu.Lock()
		s.writerRestarts++
		s.mu.Unlock()
		select {
		case <-s.writerStop:
			return
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// observe lists the store's snapshots every 200 ms and reads the manifest
// of each new one for the time its save started. Failures (the store is
// down, a snapshot pruned meanwhile) are retried on the next round.
func (s *Session) observe() {
	defer close(s.obsDone)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.obsStop:
			return
		case <-tick.C:
		}
		s.pollOnce()
	}
}

// stopObserver ends the observer's polling (once; it may never have started).
func (s *Session) stopObserver() {
	s.obsOnce.Do(func() {
		if s.obsStop != nil {
			close(s.obsStop)
			<-s.obsDone
		}
	})
}

func (s *Session) pollOnce() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ids, err := s.repo.SnapshotIDs(ctx)
	if err != nil {
		return
	}
	now := time.Now()
	for _, id := range ids {
		s.mu.Lock()
		known := s.seen[id]
		s.mu.Unlock()
		if known {
			continue
		}
		m, err := s.repo.LoadManifest(ctx, id)
		if err != nil {
			continue
		}
		s.mu.Lock()
		s.seen[id] = true
		s.snaps = append(s.snaps, snapInfo{ID: id, Time: m.Time, Seen: now})
		sort.Slice(s.snaps, func(i, j int) bool { return s.snaps[i].ID < s.snaps[j].ID })
		s.mu.Unlock()
	}
}

// firstStartedAfter is the oldest snapshot whose save started at or after t.
func (s *Session) firstStartedAfter(t time.Time) (snapInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sn := range s.snaps {
		if !sn.Time.Before(t) {
			return sn, true
		}
	}
	return snapInfo{}, false
}

// latestSeenBy is the newest snapshot the observer had seen at t.
func (s *Session) latestSeenBy(t time.Time) (snapInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var best snapInfo
	for _, sn := range s.snaps {
		if !sn.Seen.After(t) && sn.ID > best.ID {
			best = sn
		}
	}
	return best, best.ID != ""
}

// SyncAlive says why the sync is not running any more, or nil while it runs.
func (s *Session) SyncAlive() error {
	select {
	case <-s.syncExited:
		s.mu.Lock()
		err := s.syncErr
		s.mu.Unlock()
		return fmt.Errorf("tether sync exited on its own (%v); the end of its log:\n%s", err, s.SyncLogTail(2000))
	default:
		return nil
	}
}

// SyncLogTail is the last n bytes of the sync's log.
func (s *Session) SyncLogTail(n int) string {
	data, _ := os.ReadFile(s.syncLog)
	if len(data) > n {
		data = data[len(data)-n:]
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	return string(data)
}

// SyncLogCount counts the lines of the sync's log that contain substr.
func (s *Session) SyncLogCount(substr string) int {
	data, _ := os.ReadFile(s.syncLog)
	return bytes.Count(data, []byte(substr))
}

// WaitSnapshot waits (at most timeout) for a snapshot whose save started at
// or after t.
func (s *Session) WaitSnapshot(t time.Time, timeout time.Duration) (snapInfo, error) {
	deadline := time.Now().Add(timeout)
	for {
		if sn, ok := s.firstStartedAfter(t); ok {
			return sn, nil
		}
		if err := s.SyncAlive(); err != nil {
			return snapInfo{}, err
		}
		if time.Now().After(deadline) {
			return snapInfo{}, fmt.Errorf("no snapshot started after %s within %s; the end of the sync's log:\n%s",
				t.Format("15:04:05.000"), timeout, s.SyncLogTail(1500))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// restoreState restores snapshot id into a scratch directory and reads
// which of the writer's writes it holds.
func (s *Session) restoreState(id string) (*agentwriter.State, error) {
	out, err := os.MkdirTemp(s.Root, "restore-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(out)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	target := filepath.Join(out, "ws")
	if _, err := snapshot.Restore(ctx, s.repo, target, snapshot.RestoreOptions{Snapshot: id}); err != nil {
		return nil, fmt.Errorf("restore snapshot %s: %w", id, err)
	}
	return agentwriter.ReadState(target)
}

// Log is the writer's log so far.
func (s *Session) Log() ([]agentwriter.Entry, error) { return agentwriter.ReadLog(s.logPath) }

// WriterRestarts is how often the writer had to be started again (it stops
// on a write error).
func (s *Session) WriterRestarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writerRestarts
}

// Stop ends the session as a pod's end does: the writer (the agent) stops,
// then the sync gets SIGTERM and must finish a final snapshot and exit 0
// within its final budget. It returns the writes the final snapshot lacks
// (there must be none: the sync was alive for all of them) and how many
// writes were made in all.
func (s *Session) Stop() (missing []agentwriter.Entry, total int, err error) {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	close(s.writerStop)
	select {
	case <-s.writerDone:
	case <-time.After(30 * time.Second):
		return nil, 0, errors.New("the writer did not stop within 30s of SIGKILL")
	}
	if err := s.SyncAlive(); err != nil {
		return nil, 0, err
	}
	stopAt := time.Now()
	s.syncCmd.Process.Signal(syscall.SIGCONT) // a sigstop fault must not leave it stopped
	s.syncCmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.syncExited:
	case <-time.After(45 * time.Second): // the final budget is 20s
		s.syncCmd.Process.Kill()
		<-s.syncExited
		return nil, 0, fmt.Errorf("tether sync did not exit within 45s of SIGTERM; the end of its log:\n%s", s.SyncLogTail(1500))
	}
	s.mu.Lock()
	serr := s.syncErr
	s.mu.Unlock()
	if serr != nil {
		return nil, 0, fmt.Errorf("tether sync exited with %v after SIGTERM (its final snapshot failed); the end of its log:\n%s", serr, s.SyncLogTail(1500))
	}
	// Nothing writes to the store any more: the last listing is this one.
	s.stopObserver()
	s.pollOnce()
	sn, ok := s.firstStartedAfter(stopAt)
	if !ok {
		return nil, 0, fmt.Errorf("tether sync exited 0 after SIGTERM but no snapshot started after it in the store")
	}
	entries, err := s.Log()
	if err != nil {
		return nil, 0, err
	}
	state, err := s.restoreState(sn.ID)
	if err != nil {
		return nil, 0, err
	}
	for _, e := range entries {
		if !state.Has(e) {
			missing = append(missing, e)
		}
	}
	return missing, len(entries), nil
}

func (s *Session) cleanup() {
	if s.writerStop != nil {
		s.mu.Lock()
		stopped := s.stopped
		s.stopped = true
		s.mu.Unlock()
		if !stopped {
			close(s.writerStop)
		}
		select {
		case <-s.writerDone:
		case <-time.After(30 * time.Second):
		}
	}
	if s.syncCmd != nil {
		select {
		case <-s.syncExited:
		default:
			s.syncCmd.Process.Signal(syscall.SIGCONT)
			s.syncCmd.Process.Kill()
			select {
			case <-s.syncExited:
			case <-time.After(30 * time.Second):
			}
		}
	}
	s.stopObserver()
	if s.proxy != nil {
		s.proxy.Close()
	}
	for i := len(s.mounts) - 1; i >= 0; i-- {
		if err := Unmount(s.mounts[i]); err != nil {
			fmt.Fprintf(os.Stderr, "faults: %v\n", err)
		}
	}
	if d := os.Getenv("FAULTS_KEEP_LOGS"); d != "" {
		// While developing: keep the sync's and the writer's logs.
		for _, f := range []string{s.syncLog, s.logPath} {
			if data, err := os.ReadFile(f); err == nil {
				os.WriteFile(filepath.Join(d, s.cfg.Name+"-"+filepath.Base(f)), data, 0o644)
			}
		}
	}
	os.RemoveAll(s.Root)
}
