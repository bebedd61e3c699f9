package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tether-dev/tether/internal/redact"
	"github.com/tether-dev/tether/internal/runner"
	"github.com/tether-dev/tether/internal/snapshot"
	"github.com/tether-dev/tether/internal/store"
	"github.com/tether-dev/tether/internal/ui"
)

// uiBackend is what `tether run --ui` shows: its one session, from the
// status files the supervisor and the runner write into the workspace and
// the sync's /healthz, and its runner's API (the token stays here).
type uiBackend struct {
	name, workspace, agent string
	namespace, storeURL    string
	sup                    *Supervisor
	api                    *inputAPI
	syncHealth             string // the sync's /healthz URL
	hc                     *http.Client
}

func (b *uiBackend) Suspend(_ context.Context, name string) error {
	if name != b.name {
		return ui.ErrNoSession
	}
	return conflict(b.sup.Suspend())
}

func (b *uiBackend) Resume(_ context.Context, name string) error {
	if name != b.name {
		return ui.ErrNoSession
	}
	return conflict(b.sup.Resume())
}

// conflict marks the errors the session's state explains for the page.
func conflict(err error) error {
	if err == nil {
		return nil
	}
	return ui.Conflict{Err: err}
}

// openRepo opens the session's area of the store, as `tether snapshot` does.
func (b *uiBackend) openRepo(ctx context.Context) (*snapshot.Repo, func(), error) {
	st, err := store.Open(ctx, b.storeURL)
	if err != nil {
		return nil, nil, err
	}
	st = store.WithRetry(st, store.RetryOptions{AttemptTimeout: time.Minute})
	repo, err := snapshot.OpenRepo(st, b.namespace, b.name)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return repo, func() { st.Close() }, nil
}

func (b *uiBackend) Snapshots(ctx context.Context, name string) ([]ui.Snapshot, error) {
	if name != b.name {
		return nil, ui.ErrNoSession
	}
	repo, done, err := b.openRepo(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	infos, err := snapshot.List(ctx, repo)
	if err != nil {
		return nil, err
	}
	list := make([]ui.Snapshot, 0, len(infos))
	for _, m := range infos {
		list = append(list, ui.Snapshot{ID: m.ID, Time: m.Time, Files: m.Summary.Files, Bytes: m.Summary.Bytes, Uploaded: m.Summary.Uploaded,
			LeftOut: m.Summary.LeftOut, Problem: m.Problem,
			Command: fmt.Sprintf("tether snapshot restore --store %s --namespace %s --session %s --snapshot %s --workspace DIR", redact.URL(b.storeURL), b.namespace, b.name, m.ID)})
	}
	return list, nil
}

// Restore restores snapshot id into dir, which must be missing or empty
// and outside the workspace (whose snapshots would then hold it).
func (b *uiBackend) Restore(ctx context.Context, name, id, dir string) (ui.Restored, error) {
	if name != b.name {
		return ui.Restored{}, ui.ErrNoSession
	}
	if within(resolved(b.workspace), resolved(dir)) {
		return ui.Restored{}, fmt.Errorf("%s is inside the session's workspace %s: restore somewhere else", dir, b.workspace)
	}
	repo, done, err := b.openRepo(ctx)
	if err != nil {
		return ui.Restored{}, err
	}
	defer done()
	st, err := snapshot.Restore(ctx, repo, dir, snapshot.RestoreOptions{Snapshot: id})
	if err != nil {
		return ui.Restored{}, err
	}
	return ui.Restored{ID: st.ID, Dir: dir, Files: st.Files, Bytes: st.Bytes, DurationMs: st.DurationMs}, nil
}

func (b *uiBackend) Sessions(ctx context.Context) ([]ui.Session, error) {
	s := ui.Session{Name: b.name, Agent: b.agent, Phase: "starting"}
	if st, err := ReadStatus(b.workspace); err == nil {
		s.Phase, s.Restarts, s.MemoryLimit = st.State, st.Restarts, st.Memory.Limit
		for _, d := range st.Deaths {
			if d.Cause == CauseOOMKernel || d.Cause == CauseOOMWatchdog {
				s.OOMKills++
			}
			ud := ui.Death{Time: d.DiedAt, Cause: d.Cause, Detail: d.Detail, LimitBefore: d.MemoryLimit, LimitAfter: d.NextMemoryLimit}
			if d.RecoveredAt != nil {
				ud.RecoveryMs = d.RecoveredAt.Sub(d.DiedAt).Milliseconds()
			}
			s.Deaths = append(s.Deaths, ud)
		}
		if n := len(st.Deaths); n > 0 {
			d := st.Deaths[n-1]
			s.LastTermination = d.Cause + " at " + d.DiedAt.Local().Format("15:04:05")
		}
	}
	var rs runner.Status
	if data, err := readSmall(filepath.Join(b.workspace, runner.StatusFile)); err == nil && json.Unmarshal(data, &rs) == nil {
		s.Resume = rs.Resume.Outcome
		if s.Phase == StateRunning && rs.State != "" {
			s.Phase = rs.State // ready, busy, ... while the runner lives
		}
	}
	if b.syncHealth != "" {
		ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		if req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.syncHealth, nil); err == nil {
			if resp, err := b.hc.Do(req); err == nil {
				var h struct {
					LastSuccess    time.Time `json:"lastSuccess"`
					UnsavedSeconds float64   `json:"oldestUnsavedChangeSeconds"`
				}
				json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&h)
				resp.Body.Close()
				s.LastSnapshot, s.OldestUnsavedMs = h.LastSuccess, int64(h.UnsavedSeconds*1000)
			}
		}
	}
	return []ui.Session{s}, nil
}

func (b *uiBackend) Runner(_ context.Context, name string) (ui.Runner, error) {
	if name != b.name {
		return ui.Runner{}, ui.ErrNoSession
	}
	if b.sup.ctl.suspended.Load() {
		return ui.Runner{}, errors.New("the session is suspended: resume it first")
	}
	return ui.Runner{URL: b.api.url, Token: b.api.token}, nil
}

// readSmall reads a status file, refusing one too large to be one.
func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 1<<20+1))
	if err == nil && len(data) > 1<<20 {
		err = fmt.Errorf("%s is over 1 MiB", path)
	}
	return data, err
}

// startUI serves the page on addr until ctx ends.
func (s *Supervisor) startUI(ctx context.Context, addr string, b *uiBackend) (string, error) {
	ln, err := listenTCP(addr)
	if err != nil {
		return "", fmt.Errorf("--ui %s: %w", addr, err)
	}
	hosts := ui.ListenHosts(ln.Addr().String())
	if s.cfg.UIToken != "" && !strings.HasPrefix(ln.Addr().String(), "127.") {
		hosts = nil // behind a name or proxy the token guards it
	}
	srv := &http.Server{Handler: ui.NewHandler(b, ui.Options{Token: s.cfg.UIToken, Hosts: hosts, Title: "tether: " + b.name}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	return ln.Addr().String(), nil
}

func listenTCP(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

// freeLoopback returns a loopback address no one listens on now.
func freeLoopback() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("pick a loopback port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// resolved is p with the symlinks of its deepest existing ancestor
// resolved, so that a link pointing into the workspace counts as inside.
func resolved(p string) string {
	p = filepath.Clean(p)
	var rest []string
	for {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(append([]string{r}, rest...)...)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return filepath.Join(append([]string{p}, rest...)...)
		}
		rest = append([]string{filepath.Base(p)}, rest...)
		p = parent
	}
}

// within says whether p is dir or below it.
func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
