package local

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tether-dev/tether/internal/runner"
	"github.com/tether-dev/tether/internal/ui"
)

// uiBackend is what `tether run --ui` shows: its one session, from the
// status files the supervisor and the runner write into the workspace and
// the sync's /healthz, and its runner's API (the token stays here).
type uiBackend struct {
	name, workspace, agent string
	api                    *inputAPI
	syncHealth             string // the sync's /healthz URL
	hc                     *http.Client
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
