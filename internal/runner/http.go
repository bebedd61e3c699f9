package runner

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ag-ui-protocol/ag-ui/sdks/community/go/pkg/core/types"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Defaults of HTTPOptions.
const (
	DefaultMaxStreams   = 64
	DefaultMaxBodyBytes = 16 << 20
	DefaultStallTimeout = 30 * time.Second
	// MinTokenLength is the shortest token Listen accepts for an address
	// other hosts can reach.
	MinTokenLength = 16
)

// HTTPOptions configure the runner's HTTP API. Zero values take the
// defaults.
type HTTPOptions struct {
	// Token, when set, must come as "Authorization: Bearer <token>" on every
	// endpoint but the probes /healthz and /readyz (which then say no more
	// than ready or not).
	Token string
	// MaxStreams caps the SSE streams (POST /agui, /agui/events) served at
	// once; one more is answered 503 with Retry-After.
	MaxStreams int
	// MaxBodyBytes caps a request body; a larger one is answered 413.
	MaxBodyBytes int64
	// StallTimeout is how long a stream's client may take no bytes before
	// it is disconnected. What it has not taken is then bounded by the
	// socket's send buffer: the runner queues nothing for it, and every
	// frame it got whole carries the id to reconnect from (Last-Event-ID).
	StallTimeout time.Duration
}

func (o *HTTPOptions) setDefaults() {
	if o.MaxStreams <= 0 {
		o.MaxStreams = DefaultMaxStreams
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = DefaultStallTimeout
	}
}

// Handler is NewHandler with default options and token.
func Handler(r *Runner, token string) http.Handler {
	return NewHandler(r, HTTPOptions{Token: token})
}

// NewHandler serves the runner over HTTP:
//
//	POST /agui          AG-UI RunAgentInput -> SSE stream of that run's events
//	GET  /agui/events   SSE replay of the whole event log after Last-Event-ID
//	                    (header, or ?after=), then follows (POST works too, for
//	                    clients that only POST); ?snapshot=1 opens it with
//	                    MESSAGES_SNAPSHOT and STATE_SNAPSHOT, and without
//	                    Last-Event-ID starts at the live end
//	GET  /status        the status file's content
//	GET  /healthz       200 while the process serves
//	GET  /readyz        200 once the CLI is up and resume decided, else 503
//	GET  /metrics       Prometheus
//
// Streams are sent from a file of encoded frames (see frameLog), so a
// client that reads slowly costs a goroutine and a stream slot, not a copy
// of what it has yet to read.
func NewHandler(r *Runner, opts HTTPOptions) http.Handler {
	opts.setDefaults()
	h := &server{r: r, opts: opts, streams: make(chan struct{}, opts.MaxStreams), bodies: make(chan struct{}, 2)}
	if opts.Token != "" {
		h.tokenSum = sha256.Sum256([]byte(opts.Token))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /agui", h.auth(h.run))
	mux.HandleFunc("GET /agui/events", h.auth(h.replay))
	mux.HandleFunc("POST /agui/events", h.auth(h.replay))
	mux.HandleFunc("GET /status", h.auth(h.status))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", h.readyz)
	mux.Handle("GET /metrics", h.auth(promhttp.HandlerFor(r.Metrics.Registry, promhttp.HandlerOpts{}).ServeHTTP))
	return mux
}

// NewServer is the http.Server for NewHandler: header and idle timeouts, and
// a small socket send buffer, so what the kernel holds for a client that
// does not read stays small too.
func NewServer(r *Runner, opts HTTPOptions) *http.Server {
	return &http.Server{
		Handler:           NewHandler(r, opts),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetWriteBuffer(256 << 10)
			}
			return ctx
		},
	}
}

// ErrNoToken is wrapped by Listen's refusal of an address other hosts can
// reach without a (long enough) token.
var ErrNoToken = errors.New("no usable token")

// Listen listens on addr for the HTTP API. It refuses an address other hosts
// can reach (anything but loopback) without a token: whoever reaches the
// API can run commands through the agent and read the conversation.
func Listen(addr, token string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("runner HTTP API: %w", err)
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); ok && ta.IP.IsLoopback() {
		return ln, nil
	}
	switch {
	case token == "":
		ln.Close()
		return nil, fmt.Errorf("runner HTTP API: %w: refusing to listen on %s (%s), which other hosts can reach, and whoever reaches it "+
			"can run commands through the agent; set TETHER_RUNNER_TOKEN or --token-file to a random secret, or listen on 127.0.0.1",
			ErrNoToken, addr, ln.Addr())
	case len(token) < MinTokenLength:
		ln.Close()
		return nil, fmt.Errorf("runner HTTP API: %w: the token (TETHER_RUNNER_TOKEN or --token-file) is %d characters, too short for %s, "+
			"which other hosts can reach; use at least %d random ones (e.g. openssl rand -hex 16)", ErrNoToken, len(token), addr, MinTokenLength)
	}
	return ln, nil
}

type server struct {
	r        *Runner
	opts     HTTPOptions
	tokenSum [sha256.Size]byte
	streams  chan struct{} // a slot per stream served
	bodies   chan struct{} // a slot per request body being decoded

	framesMu sync.Mutex
	frames   *frameLog
}

func (s *server) authorized(req *http.Request) bool {
	if s.opts.Token == "" {
		return true
	}
	scheme, tok, _ := strings.Cut(req.Header.Get("Authorization"), " ")
	// Comparing digests keeps the comparison constant-time in the token's
	// length too.
	got := sha256.Sum256([]byte(tok))
	return strings.EqualFold(scheme, "Bearer") && subtle.ConstantTimeCompare(got[:], s.tokenSum[:]) == 1
}

func (s *server) auth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		if !s.authorized(req) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tether runner"`)
			http.Error(w, "missing or wrong bearer token: send Authorization: Bearer <the runner's token> (TETHER_RUNNER_TOKEN)", http.StatusUnauthorized)
			return
		}
		next(w, req)
	}
}

func (s *server) status(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(s.r.Status())
}

func (s *server) readyz(w http.ResponseWriter, req *http.Request) {
	st := s.r.Status()
	ready := false
	select {
	case <-s.r.Ready():
		ready = st.State == StateReady
	default:
	}
	// Probes carry no token; without one they learn ready or not, no more.
	detail := s.authorized(req)
	switch {
	case ready && detail:
		fmt.Fprintf(w, "ready (resume %s)\n", st.Resume.Outcome)
	case ready:
		io.WriteString(w, "ready\n")
	case detail:
		http.Error(w, "not ready: "+st.State, http.StatusServiceUnavailable)
	default:
		http.Error(w, "not ready", http.StatusServiceUnavailable)
	}
}

// acquireStream takes a stream slot or answers 503; call release when the
// stream ends.
func (s *server) acquireStream(w http.ResponseWriter) (release func(), ok bool) {
	select {
	case s.streams <- struct{}{}:
		s.r.Metrics.sseStreams.Inc()
		return func() { <-s.streams; s.r.Metrics.sseStreams.Dec() }, true
	default:
		s.r.Metrics.sseRejected.Inc()
		w.Header().Set("Retry-After", "5")
		http.Error(w, fmt.Sprintf("the runner serves at most %d event streams at once and all are taken; retry later", s.opts.MaxStreams), http.StatusServiceUnavailable)
		return nil, false
	}
}

// readBody decodes the request body into v (v nil: reads and drops it),
// answering 413 when it is larger than MaxBodyBytes and 400 when it does not
// decode. It reports whether the handler may go on.
func (s *server) readBody(w http.ResponseWriter, req *http.Request, v any) bool {
	limit := s.opts.MaxBodyBytes
	tooLarge := func() bool {
		http.Error(w, fmt.Sprintf("request body too large: the runner takes at most %d bytes (%s); send a smaller RunAgentInput", limit, humanBytes(limit)), http.StatusRequestEntityTooLarge)
		return false
	}
	if req.ContentLength > limit {
		return tooLarge()
	}
	// Decoding holds a few copies of the body: only a couple at a time, and
	// a client that sends slowly gets a deadline.
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case s.bodies <- struct{}{}:
		defer func() { <-s.bodies }()
	case <-req.Context().Done():
		return false
	case <-timer.C:
		w.Header().Set("Retry-After", "5")
		http.Error(w, "the runner is busy reading other requests; retry later", http.StatusServiceUnavailable)
		return false
	}
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(30 * time.Second))
	// Cleared at once: a deadline left on the connection would end the
	// stream this request starts.
	defer rc.SetReadDeadline(time.Time{})
	body := http.MaxBytesReader(w, req.Body, limit)
	var err error
	if v == nil {
		_, err = io.Copy(io.Discard, body)
	} else {
		err = json.NewDecoder(body).Decode(v)
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return tooLarge()
	case err != nil:
		http.Error(w, "bad RunAgentInput: "+err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func humanBytes(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// frameLog returns the runner's rendered events, starting the rendering on
// first use.
func (s *server) frameLog() (*frameLog, error) {
	s.framesMu.Lock()
	defer s.framesMu.Unlock()
	if s.frames != nil {
		return s.frames, nil
	}
	log := s.r.Events()
	if log == nil {
		return nil, ErrNotReady
	}
	fl, err := openFrameLog(log, s.r.cfg.Thread, framesDir(s.r.cfg.Workspace), s.r.Done())
	if err != nil {
		return nil, err
	}
	s.frames = fl
	return fl, nil
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
	release, ok := s.acquireStream(w)
	if !ok {
		return
	}
	defer release()
	var in types.RunAgentInput
	if !s.readBody(w, req, &in) {
		return
	}
	text, err := userText(in)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// The frames first: a message is not sent when its run cannot be
	// streamed.
	fl, err := s.frameLog()
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	rec, err := s.r.SendThread(req.Context(), text, in.RunID, in.ThreadID)
	switch {
	case errors.Is(err, ErrNotReady), errors.Is(err, ErrStopping):
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	sse := s.startSSE(w)
	// The run's events, from its input record to its end.
	var d inputData
	json.Unmarshal(rec.Data, &d)
	s.follow(req, sse, fl, rec.Seq, 0, runEvents(RunID(rec.Turn, d.RunID)))
}

// sessionState is the STATE_SNAPSHOT of a connecting client: the runner's
// status and how many times the session's runner restarted.
func (s *server) sessionState(fl *frameLog) map[string]any {
	st := s.r.Status()
	restarts := max(fl.lifeCount()-1, 0)
	return map[string]any{
		"thread": st.Thread, "phase": st.State, "sessionId": st.SessionID, "turns": st.Turns, "turnOpen": st.TurnOpen,
		"resume": st.Resume.Outcome, "restarts": restarts,
	}
}

func (s *server) replay(w http.ResponseWriter, req *http.Request) {
	if req.Method == http.MethodPost && !s.readBody(w, req, nil) {
		return
	}
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
	release, ok := s.acquireStream(w)
	if !ok {
		return
	}
	defer release()
	fl, err := s.frameLog()
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	// A stream that resumes inside a run opens with that run's start again:
	// AG-UI clients check every stream on its own. With ?snapshot=1 it
	// opens with the conversation so far and the session's state (where it
	// resumes, or at the live end without Last-Event-ID).
	var prefix []byte
	if snap := req.URL.Query().Get("snapshot"); snap == "1" || snap == "true" {
		if last == "" {
			seq, next = fl.liveEnd(), 0
		}
		prefix, err = fl.connectFrames(seq, next, s.sessionState(fl))
	} else {
		var o openAt
		o, err = fl.resumePrefix(seq, next)
		prefix = o.bytes()
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	sse := s.startSSE(w)
	if len(prefix) > 0 {
		sse.deadline()
		if _, err := w.Write(prefix); err != nil || sse.rc.Flush() != nil {
			return
		}
	}
	s.follow(req, sse, fl, seq, next, allEvents)
}

// follow sends the frames of records from seq on (skipping the first skip
// events of record seq) until filter says last, the client goes away, does
// not take what it is sent within StallTimeout, or the runner ends.
func (s *server) follow(req *http.Request, sse *sseWriter, fl *frameLog, seq int64, skip int, filter func(frameRec) (from, to int, last bool)) {
	defer sse.deadline()
	ctx := req.Context()
	for {
		sp, err := fl.next(ctx, seq, skip, filter)
		if err != nil {
			if !errors.Is(err, errStreamEnded) && ctx.Err() == nil {
				s.r.log.Error("AG-UI stream ended early", "client", req.RemoteAddr, "err", err)
			}
			return
		}
		if err := sse.copy(fl.f, sp.off, sp.end); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				s.r.Metrics.sseStalled.Inc()
				s.r.log.Info("disconnected an AG-UI client that took no bytes for too long; it can reconnect with the Last-Event-ID it got last",
					"client", req.RemoteAddr, "stall_timeout", s.opts.StallTimeout)
			}
			return
		}
		seq, skip = sp.next, 0
		if sp.last {
			return
		}
	}
}

type sseWriter struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	stall time.Duration
}

func (s *server) startSSE(w http.ResponseWriter) *sseWriter {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	sse := &sseWriter{w: w, rc: http.NewResponseController(w), stall: s.opts.StallTimeout}
	sse.deadline()
	sse.rc.Flush()
	return sse
}

// deadline gives the next writes StallTimeout to complete.
func (s *sseWriter) deadline() { s.rc.SetWriteDeadline(time.Now().Add(s.stall)) }

// copyBufs are the buffers streams copy frames through: held only while a
// copy runs, so an idle follower holds none.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// copy sends bytes [off, end) of f, a buffer at a time, each write under
// the stall deadline.
func (s *sseWriter) copy(f *os.File, off, end int64) error {
	if off >= end {
		return nil
	}
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for off < end {
		n := int(min(int64(len(buf)), end-off))
		if _, err := f.ReadAt(buf[:n], off); err != nil {
			return fmt.Errorf("AG-UI frame cache: %w", err)
		}
		s.deadline()
		if _, err := s.w.Write(buf[:n]); err != nil {
			return err
		}
		off += int64(n)
	}
	s.deadline()
	return s.rc.Flush()
}
