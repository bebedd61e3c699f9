package runner

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/ag-ui-protocol/ag-ui/sdks/community/go/pkg/core/types"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves the runner over HTTP:
//
//	POST /agui          AG-UI RunAgentInput -> SSE stream of that run's events
//	GET  /agui/events   SSE replay of the whole event log after Last-Event-ID
//	                    (header, or ?after=), then follows (POST works too, for
//	                    clients that only POST)
//	GET  /status        the status file's content
//	GET  /healthz       200 while the process serves
//	GET  /readyz        200 once the CLI is up and resume decided, else 503
//	GET  /metrics       Prometheus
//
// With a non-empty token, /agui* and /status need "Authorization: Bearer
// <token>" (compared in constant time); probes and metrics stay open.
func Handler(r *Runner, token string) http.Handler {
	h := &server{r: r, token: token}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /agui", h.auth(h.run))
	mux.HandleFunc("GET /agui/events", h.auth(h.replay))
	mux.HandleFunc("POST /agui/events", h.auth(h.replay))
	mux.HandleFunc("GET /status", h.auth(h.status))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", h.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(r.Metrics.Registry, promhttp.HandlerOpts{}))
	return mux
}

type server struct {
	r     *Runner
	token string
}

func (s *server) auth(next http.HandlerFunc) http.HandlerFunc {
	if s.token == "" {
		return next
	}
	want := []byte("Bearer " + s.token)
	return func(w http.ResponseWriter, req *http.Request) {
		got := []byte(req.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tether runner"`)
			http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
			return
		}
		next(w, req)
	}
}

func (s *server) status(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(s.r.Status())
}

func (s *server) readyz(w http.ResponseWriter, _ *http.Request) {
	st := s.r.Status()
	select {
	case <-s.r.Ready():
		if st.State == StateReady {
			fmt.Fprintf(w, "ready (resume %s)\n", st.Resume.Outcome)
			return
		}
	default:
	}
	http.Error(w, "not ready: "+st.State, http.StatusServiceUnavailable)
}

// userText returns the text of the last user message of a RunAgentInput.
func userText(in types.RunAgentInput) (string, error) {
	for i := len(in.Messages) - 1; i >= 0; i-- {
		m := in.Messages[i]
		if m.Role != types.RoleUser {
			continue
		}
		if s, ok := m.ContentString(); ok && s != "" {
			return s, nil
		}
		if parts, ok := m.Content.([]any); ok {
			var b strings.Builder
			for _, p := range parts {
				if pm, ok := p.(map[string]any); ok && pm["type"] == "text" {
					t, _ := pm["text"].(string)
					b.WriteString(t)
				}
			}
			if b.Len() > 0 {
				return b.String(), nil
			}
		}
	}
	return "", errors.New("the RunAgentInput has no user message with text")
}

func (s *server) run(w http.ResponseWriter, req *http.Request) {
	var in types.RunAgentInput
	if err := json.NewDecoder(io.LimitReader(req.Body, 16<<20)).Decode(&in); err != nil {
		http.Error(w, "bad RunAgentInput: "+err.Error(), http.StatusBadRequest)
		return
	}
	text, err := userText(in)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rec, err := s.r.Send(req.Context(), text, in.RunID)
	switch {
	case errors.Is(err, ErrNotReady), errors.Is(err, ErrStopping):
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	sse := startSSE(w)
	// The run's events are the log's records of its turn, from its input
	// record to its end.
	s.follow(req.Context(), sse, rec.Seq, 0, func(r Record) (send, last bool) {
		if r.Turn != rec.Turn {
			return false, false
		}
		return true, endsRun(r)
	})
}

// endsRun reports whether rec closes its turn's run.
func endsRun(rec Record) bool {
	switch {
	case rec.Kind == KindCLI && rec.Type == "result":
		return true
	case rec.Kind == KindRunner && (rec.Type == "cli_exit" || rec.Type == "runner_failed" || rec.Type == "stopped"):
		var d struct {
			TurnOpen bool `json:"turn_open"`
		}
		json.Unmarshal(rec.Data, &d)
		return d.TurnOpen
	}
	return false
}

func (s *server) replay(w http.ResponseWriter, req *http.Request) {
	last := req.Header.Get("Last-Event-ID")
	if last == "" {
		last = req.URL.Query().Get("after")
	}
	seq, next, err := parseEventID(last)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if seq < 1 {
		seq = 1
	}
	sse := startSSE(w)
	s.follow(req.Context(), sse, seq, next, func(Record) (bool, bool) { return true, false })
}

// follow writes the events of records from seq on (skipping the first skip
// events of record seq) until filter says last, the client goes away or the
// runner ends.
func (s *server) follow(ctx context.Context, sse *sseWriter, seq int64, skip int, filter func(Record) (send, last bool)) {
	log := s.r.Events()
	after := seq - 1
	thread := s.r.cfg.Thread
	for {
		n, notify := log.Last()
		if after < n {
			recs, err := log.ReadAfter(after, 512)
			if err != nil {
				return
			}
			for _, rec := range recs {
				after = rec.Seq
				send, last := filter(rec)
				if send {
					for i, ev := range Translate(rec, thread) {
						if rec.Seq == seq && i < skip {
							continue
						}
						if err := sse.write(ev); err != nil {
							return
						}
					}
				}
				if last {
					return
				}
			}
			continue
		}
		select {
		case <-notify:
		case <-ctx.Done():
			return
		case <-s.r.Done():
			// Deliver what the runner wrote last, then end.
			if n2, _ := log.Last(); n2 == after {
				return
			}
		}
	}
}

type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func startSSE(w http.ResponseWriter) *sseWriter {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	rc.Flush()
	return &sseWriter{w: w, rc: rc}
}

func (s *sseWriter) write(ev Event) error {
	data, err := ev.Event.ToJSON()
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(s.w, "id: %s\nevent: %s\ndata: %s\n\n", ev.ID, ev.Event.Type(), data); err != nil {
		return err
	}
	return s.rc.Flush()
}
