package ui

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type fakeBackend struct {
	sessions []Session
	runner   Runner
}

func (f *fakeBackend) Sessions(context.Context) ([]Session, error) { return f.sessions, nil }

func (f *fakeBackend) Runner(_ context.Context, name string) (Runner, error) {
	for _, s := range f.sessions {
		if s.Name == name {
			return f.runner, nil
		}
	}
	return Runner{}, ErrNoSession
}

// fakeRunner answers as a runner's HTTP API does and records what it got.
type fakeRunner struct {
	srv      *httptest.Server
	auth     chan string
	lastID   chan string
	input    chan map[string]any
	status   int
	sseLines string
}

func newFakeRunner(t *testing.T) *fakeRunner {
	fr := &fakeRunner{auth: make(chan string, 8), lastID: make(chan string, 8), input: make(chan map[string]any, 8), status: http.StatusOK,
		sseLines: "id: 1:0\ndata: {\"type\":\"RUN_STARTED\",\"threadId\":\"main\",\"runId\":\"r\"}\n\n"}
	fr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fr.auth <- r.Header.Get("Authorization")
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/agui/events":
			if r.URL.Query().Get("snapshot") != "1" {
				http.Error(w, "want snapshot=1", http.StatusBadRequest)
				return
			}
			fr.lastID <- r.Header.Get("Last-Event-ID")
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, fr.sseLines)
		case r.Method == http.MethodPost && r.URL.Path == "/agui":
			var in map[string]any
			json.NewDecoder(r.Body).Decode(&in)
			fr.input <- in
			if fr.status != http.StatusOK {
				http.Error(w, "not ready", fr.status)
				return
			}
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done() // a run streams until it ends; the page does not wait for that
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(fr.srv.Close)
	return fr
}

func newPage(t *testing.T, opts Options) (*httptest.Server, *fakeRunner) {
	fr := newFakeRunner(t)
	b := &fakeBackend{
		sessions: []Session{{Name: "s1", Agent: "claude", Phase: "running", Restarts: 2, LastTermination: `<script>alert(1)</script>`, LastSnapshot: time.Now().Add(-3 * time.Second)}},
		runner:   Runner{URL: fr.srv.URL, Token: "runner-secret"},
	}
	srv := httptest.NewServer(NewHandler(b, opts))
	t.Cleanup(srv.Close)
	return srv, fr
}

func do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func get(t *testing.T, url string) *http.Request {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestPagesRender: the list and a session page show the session, and what
// a session reports is escaped, never markup.
func TestPagesRender(t *testing.T) {
	srv, _ := newPage(t, Options{})
	resp, body := do(t, get(t, srv.URL+"/"))
	if resp.StatusCode != 200 || !strings.Contains(body, `href="/sessions/s1"`) || strings.Contains(body, "<script>alert") || !strings.Contains(body, "&lt;script&gt;") {
		t.Fatalf("list: %d\n%s", resp.StatusCode, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("list without a content security policy: %q", csp)
	}
	resp, body = do(t, get(t, srv.URL+"/sessions/s1"))
	if resp.StatusCode != 200 || !strings.Contains(body, `data-session="s1"`) {
		t.Fatalf("session page: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ := do(t, get(t, srv.URL+"/sessions/nope")); resp.StatusCode != 404 {
		t.Errorf("an unknown session: %d, want 404", resp.StatusCode)
	}
	resp, body = do(t, get(t, srv.URL+"/api/sessions"))
	if resp.StatusCode != 200 || !strings.Contains(body, `"name":"s1"`) || !strings.Contains(body, `"restarts":2`) {
		t.Errorf("api: %d %s", resp.StatusCode, body)
	}
	if resp, body := do(t, get(t, srv.URL+"/assets/app.js")); resp.StatusCode != 200 || !strings.Contains(body, "EventSource") {
		t.Errorf("app.js: %d", resp.StatusCode)
	}
}

// TestEventsProxy: the page's stream is the runner's, asked with the
// runner's token (which the browser never sees), with the snapshot, and
// resumed after the browser's Last-Event-ID.
func TestEventsProxy(t *testing.T) {
	srv, fr := newPage(t, Options{})
	req := get(t, srv.URL+"/sessions/s1/events")
	req.Header.Set("Last-Event-ID", "7:2")
	resp, body := do(t, req)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || !strings.Contains(body, `"type":"RUN_STARTED"`) || !strings.Contains(body, "id: 1:0") {
		t.Fatalf("events: %d %q\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if a := <-fr.auth; a != "Bearer runner-secret" {
		t.Errorf("the runner got Authorization %q", a)
	}
	if id := <-fr.lastID; id != "7:2" {
		t.Errorf("the runner got Last-Event-ID %q, want 7:2", id)
	}
	if strings.Contains(body, "runner-secret") {
		t.Error("the runner's token reached the browser")
	}
}

// TestSend: a message typed into the page reaches the runner as the user
// message of a run, and the page hears 202 as soon as the runner took it.
func TestSend(t *testing.T) {
	srv, fr := newPage(t, Options{})
	post := func(body, ctype, origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/sessions/s1/messages", strings.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, _ := do(t, req)
		return resp
	}
	start := time.Now()
	if resp := post(`{"text":"hello agent"}`, "application/json", srv.URL); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("send: %d, want 202", resp.StatusCode)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("send waited %v for the run to end", d)
	}
	in := <-fr.input
	msgs, _ := in["messages"].([]any)
	if len(msgs) != 1 || !strings.Contains(mustJSON(msgs[0]), `"content":"hello agent"`) || !strings.Contains(mustJSON(msgs[0]), `"role":"user"`) {
		t.Errorf("the runner got %v", in)
	}
	if a := <-fr.auth; a != "Bearer runner-secret" {
		t.Errorf("the runner got Authorization %q", a)
	}
	for _, c := range []struct {
		body, ctype, origin string
		want                int
	}{
		{`{"text":"x"}`, "application/json", "http://evil.example", http.StatusForbidden},
		{`text=x`, "application/x-www-form-urlencoded", "", http.StatusUnsupportedMediaType},
		{`{"text":"  "}`, "application/json", "", http.StatusBadRequest},
		{`{"text":"` + strings.Repeat("a", maxMessage+1) + `"}`, "application/json", "", http.StatusBadRequest},
	} {
		if resp := post(c.body, c.ctype, c.origin); resp.StatusCode != c.want {
			t.Errorf("post %.40q (%s, origin %q): %d, want %d", c.body, c.ctype, c.origin, resp.StatusCode, c.want)
		}
	}
	fr.status = http.StatusServiceUnavailable
	if resp := post(`{"text":"again"}`, "application/json", ""); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("send to a runner that is not ready: %d, want 503", resp.StatusCode)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestAccess: a Host the page is not served under is refused (DNS
// rebinding), and with a token nothing is served without it; ?token= sets
// the cookie the page then uses.
func TestAccess(t *testing.T) {
	page, _ := newPage(t, Options{Hosts: []string{"127.0.0.1:1"}})
	if resp, _ := do(t, get(t, page.URL+"/")); resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("a request under another Host: %d, want 421", resp.StatusCode)
	}

	tok, _ := newPage(t, Options{Token: "ui-secret"})
	if resp, _ := do(t, get(t, tok.URL+"/")); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", resp.StatusCode)
	}
	if resp, _ := do(t, get(t, tok.URL+"/?token=wrong")); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a wrong token: %d, want 401", resp.StatusCode)
	}
	resp, _ := do(t, get(t, tok.URL+"/sessions/s1?token=ui-secret"))
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/sessions/s1" {
		t.Fatalf("?token: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == cookieName {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode {
		t.Fatalf("the token cookie: %+v", cookie)
	}
	req := get(t, tok.URL+"/sessions/s1")
	req.AddCookie(cookie)
	if resp, _ := do(t, req); resp.StatusCode != 200 {
		t.Errorf("with the cookie: %d", resp.StatusCode)
	}
	req = get(t, tok.URL+"/api/sessions")
	req.Header.Set("Authorization", "Bearer ui-secret")
	if resp, _ := do(t, req); resp.StatusCode != 200 {
		t.Errorf("with the bearer token: %d", resp.StatusCode)
	}
}

func TestListenHosts(t *testing.T) {
	got := strings.Join(ListenHosts("127.0.0.1:8080"), " ")
	if got != "127.0.0.1:8080 localhost:8080 [::1]:8080" {
		t.Errorf("ListenHosts(127.0.0.1:8080) = %s", got)
	}
	if got := strings.Join(ListenHosts("10.0.0.5:80"), " "); got != "10.0.0.5:80" {
		t.Errorf("ListenHosts(10.0.0.5:80) = %s", got)
	}
}
