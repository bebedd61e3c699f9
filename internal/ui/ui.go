// Package ui is tether's web page: the list of sessions and, for each, the
// conversation as it streams, a box to send a message and the session's
// deaths and recoveries. It is plain server-rendered HTML with a little
// JavaScript, embedded in the binary (no CDN, no build step).
//
// The page never talks to a runner: the handler proxies the runner's AG-UI
// stream (GET /agui/events?snapshot=1, so a page that connects late, or
// reloads mid-turn, gets the whole conversation first) and the messages it
// sends, adding the runner's token on the way. The browser holds none.
//
// What a Backend serves: `tether run --ui` serves its one session
// (internal/local); the operator would serve the sessions of its cluster.
//
// Access. Requests must name the address the page is served on in their
// Host header (no DNS rebinding of a loopback port), and requests that
// change something must come from the page itself (Origin, and a JSON body,
// which a cross-site form cannot send). With Options.Token set every request
// needs it: as a bearer token, or as the cookie that opening the page once
// with ?token=... sets.
package ui

import (
	"bytes"
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

//go:embed assets
var assets embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"age":   age,
	"bytes": bytesIEC,
	"ms":    func(ms int64) string { return dur(time.Duration(ms) * time.Millisecond) },
}).ParseFS(assets, "assets/*.html"))

// Session is one session as the list shows it.
type Session struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
	Agent     string `json:"agent,omitempty"`
	// Phase is what the session is doing: running, restarting, stopped...
	Phase    string `json:"phase"`
	Restarts int    `json:"restarts"`
	OOMKills int    `json:"oomKills"`
	// MemoryLimit of the runner, bytes (0: unknown).
	MemoryLimit int64 `json:"memoryLimit,omitempty"`
	// LastTermination says how the last runner died ("" when none did).
	LastTermination string `json:"lastTermination,omitempty"`
	// LastSnapshot is when the newest snapshot was saved (zero: unknown).
	LastSnapshot time.Time `json:"lastSnapshot,omitzero"`
	// OldestUnsavedMs is the age of the oldest change not yet in a
	// snapshot, in milliseconds (0: none, or unknown).
	OldestUnsavedMs int64 `json:"oldestUnsavedMs,omitempty"`
	// Resume is the outcome of the last resume of the agent's conversation.
	Resume string `json:"resume,omitempty"`
	// Deaths is the session's timeline of runner deaths, oldest first.
	Deaths []Death `json:"deaths,omitempty"`
}

// Death is one runner death and what followed.
type Death struct {
	Time   time.Time `json:"time"`
	Cause  string    `json:"cause"`
	Detail string    `json:"detail,omitempty"`
	// MemoryLimit before the death and after the restart (bytes; 0 unknown).
	LimitBefore int64 `json:"limitBefore,omitempty"`
	LimitAfter  int64 `json:"limitAfter,omitempty"`
	// RecoveryMs is how long the session took to have a ready runner
	// again, in milliseconds (0: not yet, or unknown).
	RecoveryMs int64 `json:"recoveryMs,omitempty"`
}

// Runner is where a session's runner serves its HTTP API.
type Runner struct {
	URL   string
	Token string
}

// Backend is what the page shows and where it sends.
type Backend interface {
	Sessions(ctx context.Context) ([]Session, error)
	// Runner returns the runner of session name, or ErrNoSession.
	Runner(ctx context.Context, name string) (Runner, error)
}

// ErrNoSession is what a Backend returns for a session it does not have.
var ErrNoSession = errors.New("no such session")

// Options configure the handler.
type Options struct {
	// Token, when set, is required on every request.
	Token string
	// Hosts are the Host headers the page answers to (host:port). Empty:
	// any, which only a Token (or a front proxy) may allow.
	Hosts []string
	// Title names the page ("tether").
	Title string
}

// ListenHosts returns the Host headers a page listening on addr (as
// net.Listen gave it) answers to: the address itself and, for a loopback
// one, localhost with its port.
func ListenHosts(addr string) []string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return []string{addr}
	}
	hosts := []string{addr}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
			if hp := net.JoinHostPort(h, port); hp != addr {
				hosts = append(hosts, hp)
			}
		}
	}
	return hosts
}

type handler struct {
	b    Backend
	opts Options
	hc   *http.Client
}

// NewHandler returns the page's handler.
func NewHandler(b Backend, opts Options) http.Handler {
	if opts.Title == "" {
		opts.Title = "tether"
	}
	h := &handler{b: b, opts: opts, hc: &http.Client{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", h.list)
	mux.HandleFunc("GET /api/sessions", h.apiSessions)
	mux.HandleFunc("GET /sessions/{name}", h.session)
	mux.HandleFunc("GET /sessions/{name}/events", h.events)
	mux.HandleFunc("POST /sessions/{name}/messages", h.send)
	mux.HandleFunc("POST /sessions/{name}/suspend", h.control(func(sp Suspender, ctx context.Context, name string) error { return sp.Suspend(ctx, name) }))
	mux.HandleFunc("POST /sessions/{name}/resume", h.control(func(sp Suspender, ctx context.Context, name string) error { return sp.Resume(ctx, name) }))
	mux.HandleFunc("GET /api/sessions/{name}/snapshots", h.apiSnapshots)
	mux.HandleFunc("POST /sessions/{name}/snapshots/{id}/restore", h.restore)
	mux.Handle("GET /assets/", http.FileServerFS(assets))
	return h.guard(mux)
}

const cookieName = "tether_ui"

// guard refuses what the page must not answer: a Host it is not served on,
// a missing token, a change that does not come from the page.
func (h *handler) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(h.opts.Hosts) > 0 && !hostAllowed(r.Host, h.opts.Hosts) {
			http.Error(w, "this page is not served under the name "+quote(r.Host), http.StatusMisdirectedRequest)
			return
		}
		if h.opts.Token != "" {
			if t := r.URL.Query().Get("token"); t != "" && r.Method == http.MethodGet && equal(t, h.opts.Token) {
				http.SetCookie(w, &http.Cookie{Name: cookieName, Value: t, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
				q := r.URL.Query()
				q.Del("token")
				u := *r.URL
				u.RawQuery = q.Encode()
				http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
				return
			}
			if !h.authorized(r) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="tether"`)
				http.Error(w, "this page needs its token: open it once as /?token=... (TETHER_UI_TOKEN), or send Authorization: Bearer", http.StatusUnauthorized)
				return
			}
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host && o != "https://"+r.Host {
				http.Error(w, "a change to a session must come from its page, not from "+quote(o), http.StatusForbidden)
				return
			}
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				http.Error(w, "send JSON (Content-Type: application/json)", http.StatusUnsupportedMediaType)
				return
			}
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		next.ServeHTTP(w, r)
	})
}

func (h *handler) authorized(r *http.Request) bool {
	if a, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && equal(a, h.opts.Token) {
		return true
	}
	c, err := r.Cookie(cookieName)
	return err == nil && equal(c.Value, h.opts.Token)
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

func hostAllowed(host string, allowed []string) bool {
	for _, a := range allowed {
		if strings.EqualFold(host, a) {
			return true
		}
	}
	return false
}

// quote keeps a value from a request short and on one line in a reply.
func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return fmt.Sprintf("%q", s)
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	ss, err := h.b.Sessions(r.Context())
	if err != nil {
		http.Error(w, "list the sessions: "+err.Error(), http.StatusBadGateway)
		return
	}
	h.render(w, "list.html", map[string]any{"Title": h.opts.Title, "Sessions": ss, "Now": time.Now()})
}

func (h *handler) apiSessions(w http.ResponseWriter, r *http.Request) {
	ss, err := h.b.Sessions(r.Context())
	if err != nil {
		http.Error(w, "list the sessions: "+err.Error(), http.StatusBadGateway)
		return
	}
	if ss == nil {
		ss = []Session{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(map[string]any{"sessions": ss, "now": time.Now()})
}

func (h *handler) find(w http.ResponseWriter, r *http.Request) (Session, bool) {
	name := r.PathValue("name")
	ss, err := h.b.Sessions(r.Context())
	if err != nil {
		http.Error(w, "list the sessions: "+err.Error(), http.StatusBadGateway)
		return Session{}, false
	}
	for _, s := range ss {
		if s.Name == name {
			return s, true
		}
	}
	http.Error(w, "no session "+quote(name), http.StatusNotFound)
	return Session{}, false
}

func (h *handler) session(w http.ResponseWriter, r *http.Request) {
	s, ok := h.find(w, r)
	if !ok {
		return
	}
	_, canSuspend := h.b.(Suspender)
	_, hasSnapshots := h.b.(Snapshotter)
	h.render(w, "session.html", map[string]any{"Title": h.opts.Title, "S": s, "Now": time.Now(), "CanSuspend": canSuspend, "HasSnapshots": hasSnapshots})
}

func (h *handler) render(w http.ResponseWriter, page string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := pages.ExecuteTemplate(w, page, data); err != nil {
		fmt.Fprintf(w, "<p>render %s: %s</p>", page, template.HTMLEscapeString(err.Error()))
	}
}

func (h *handler) runner(w http.ResponseWriter, r *http.Request) (Runner, bool) {
	rn, err := h.b.Runner(r.Context(), r.PathValue("name"))
	if errors.Is(err, ErrNoSession) {
		http.Error(w, "no session "+quote(r.PathValue("name")), http.StatusNotFound)
		return rn, false
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return rn, false
	}
	return rn, true
}

// events proxies the runner's AG-UI stream, with the conversation so far
// first (?snapshot=1), resuming after the Last-Event-ID the browser's
// EventSource sends when it reconnects.
func (h *handler) events(w http.ResponseWriter, r *http.Request) {
	rn, ok := h.runner(w, r)
	if !ok {
		return
	}
	hdr := http.Header{}
	if id := r.Header.Get("Last-Event-ID"); id != "" && len(id) <= 64 {
		hdr.Set("Last-Event-ID", id)
	}
	resp, ok := h.callRunner(w, r.Context(), rn, http.MethodGet, "/agui/events?snapshot=1", nil, hdr, "")
	if !ok {
		return
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	// retry: how soon the browser reconnects after the runner went away.
	io.WriteString(w, "retry: 1000\n\n")
	if fl != nil {
		fl.Flush()
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if fl != nil {
				fl.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}

// callRunner makes a request of the session's runner, with its token, and
// answers the page itself when the runner does not answer 200 (what says
// what the runner did not do).
func (h *handler) callRunner(w http.ResponseWriter, ctx context.Context, rn Runner, method, path string, body []byte, hdr http.Header, what string) (*http.Response, bool) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(rn.URL, "/")+path, bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return nil, false
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "text/event-stream")
	if rn.Token != "" {
		req.Header.Set("Authorization", "Bearer "+rn.Token)
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		// The runner is restarting: the page tries again.
		w.Header().Set("Retry-After", "1")
		http.Error(w, "the session's runner does not answer (it may be restarting): try again", http.StatusServiceUnavailable)
		return nil, false
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		http.Error(w, strings.TrimSpace("the session's runner "+what)+": "+strings.TrimSpace(string(msg)), http.StatusServiceUnavailable)
		return nil, false
	}
	return resp, true
}

// maxMessage bounds what the page may send as one message.
const maxMessage = 256 << 10

// send gives the agent a message typed into the page. It answers once the
// runner has taken it (202), and leaves the run's events to the stream.
func (h *handler) send(w http.ResponseWriter, r *http.Request) {
	rn, ok := h.runner(w, r)
	if !ok {
		return
	}
	var in struct {
		Text string `json:"text"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, maxMessage+1024)).Decode(&in); err != nil || strings.TrimSpace(in.Text) == "" || len(in.Text) > maxMessage {
		http.Error(w, "send {\"text\": \"...\"}: a message of 1 byte to 256 KiB", http.StatusBadRequest)
		return
	}
	body, _ := json.Marshal(map[string]any{
		"threadId": "main", "runId": "ui-" + randomID(), "state": map[string]any{}, "tools": []any{}, "context": []any{}, "forwardedProps": map[string]any{},
		"messages": []any{map[string]any{"id": "ui-msg-" + randomID(), "role": "user", "content": in.Text}},
	})
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	resp, ok := h.callRunner(w, ctx, rn, http.MethodPost, "/agui", body, http.Header{"Content-Type": {"application/json"}}, "did not take the message")
	if !ok {
		return
	}
	defer resp.Body.Close()
	// Taken: the run's events reach the page through its stream.
	w.WriteHeader(http.StatusAccepted)
}
