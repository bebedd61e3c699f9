package ui

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// controlBackend is fakeBackend with suspend, resume and snapshots.
type controlBackend struct {
	fakeBackend
	calls    []string
	conflict bool
	restored []string
}

func (c *controlBackend) Suspend(_ context.Context, name string) error {
	c.calls = append(c.calls, "suspend "+name)
	if c.conflict {
		return Conflict{Err: errors.New("the session is already suspended")}
	}
	return nil
}

func (c *controlBackend) Resume(_ context.Context, name string) error {
	c.calls = append(c.calls, "resume "+name)
	return nil
}

func (c *controlBackend) Snapshots(_ context.Context, name string) ([]Snapshot, error) {
	if name != "s1" {
		return nil, ErrNoSession
	}
	return []Snapshot{{ID: "20261205T070000Z-aaaa", Files: 3, Bytes: 100, Uploaded: 40}}, nil
}

func (c *controlBackend) Restore(_ context.Context, name, id, dir string) (Restored, error) {
	if dir == "/not/empty" {
		return Restored{}, errors.New("restore: /not/empty is not empty")
	}
	c.restored = append(c.restored, id+" "+dir)
	return Restored{ID: id, Dir: dir, Files: 3}, nil
}

func TestSuspendResumeAndRestore(t *testing.T) {
	b := &controlBackend{fakeBackend: fakeBackend{sessions: []Session{{Name: "s1", Phase: "ready"}}}}
	srv := httptest.NewServer(NewHandler(b, Options{}))
	defer srv.Close()
	post := func(path, body, ctype string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		return do(t, req)
	}
	// The page offers the buttons and the snapshot list only when the
	// backend has them.
	if _, body := do(t, get(t, srv.URL+"/sessions/s1")); !strings.Contains(body, `id="suspend"`) || !strings.Contains(body, `id="snapshots"`) {
		t.Errorf("the session page lacks the controls:\n%s", body)
	}
	for _, c := range []struct {
		path, body, ctype string
		want              int
	}{
		{"/sessions/s1/suspend", "{}", "application/json", http.StatusAccepted},
		{"/sessions/s1/resume", "{}", "application/json", http.StatusAccepted},
		{"/sessions/s1/suspend", "", "application/x-www-form-urlencoded", http.StatusUnsupportedMediaType}, // a cross-site form
		{"/sessions/s1/snapshots/20261205T070000Z-aaaa/restore", `{"dir":"/tmp/r"}`, "application/json", http.StatusOK},
		{"/sessions/s1/snapshots/x/restore", `{"dir":"relative/dir"}`, "application/json", http.StatusBadRequest},
		{"/sessions/s1/snapshots/x/restore", `{"dir":"/not/empty"}`, "application/json", http.StatusUnprocessableEntity},
	} {
		if resp, body := post(c.path, c.body, c.ctype); resp.StatusCode != c.want {
			t.Errorf("POST %s %s = %d %q, want %d", c.path, c.body, resp.StatusCode, body, c.want)
		}
	}
	if got := strings.Join(b.calls, ","); got != "suspend s1,resume s1" {
		t.Errorf("the backend was asked %q", got)
	}
	if got := strings.Join(b.restored, ","); got != "20261205T070000Z-aaaa /tmp/r" {
		t.Errorf("restored %q", got)
	}
	b.conflict = true
	if resp, body := post("/sessions/s1/suspend", "{}", "application/json"); resp.StatusCode != http.StatusConflict || !strings.Contains(body, "already suspended") {
		t.Errorf("a suspend of a suspended session: %d %q", resp.StatusCode, body)
	}
	if resp, body := do(t, get(t, srv.URL+"/api/sessions/s1/snapshots")); resp.StatusCode != 200 || !strings.Contains(body, `"uploaded":40`) {
		t.Errorf("snapshots: %d %s", resp.StatusCode, body)
	}
	if resp, _ := do(t, get(t, srv.URL+"/api/sessions/nope/snapshots")); resp.StatusCode != http.StatusNotFound {
		t.Errorf("snapshots of no session: %d", resp.StatusCode)
	}

	// A backend without them: no buttons, and the routes say why.
	plain := httptest.NewServer(NewHandler(&b.fakeBackend, Options{}))
	defer plain.Close()
	if _, body := do(t, get(t, plain.URL+"/sessions/s1")); strings.Contains(body, `id="suspend"`) {
		t.Errorf("a page without suspend shows the button")
	}
	req, _ := http.NewRequest(http.MethodPost, plain.URL+"/sessions/s1/suspend", strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	if resp, _ := do(t, req); resp.StatusCode != http.StatusNotImplemented {
		t.Errorf("suspend without a Suspender: %d", resp.StatusCode)
	}
}
