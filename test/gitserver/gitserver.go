// Package gitserver serves git repositories over smart HTTP on 127.0.0.1 for
// tests: the real `git http-backend` behind net/http/cgi, so a clone goes
// through git-remote-http exactly as against a forge. It can require an
// Authorization header and records the ones it got, and it lists the
// command lines of the processes alive on the machine, for tests that check
// a credential reached the server without showing up in `ps`.
package gitserver

import (
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Options configure a Server.
type Options struct {
	// Auth, when set, is the Authorization header every request must carry;
	// others get 401 with a Basic challenge.
	Auth string
	// OnRequest, when set, runs for each request before it is served, while
	// the client waits for the answer (r.Host is the server's host:port).
	OnRequest func(r *http.Request)
}

// Server is a smart-HTTP git server on 127.0.0.1.
type Server struct {
	// URL is the server's root, http://127.0.0.1:port; repositories are
	// URL + "/" + name.
	URL string

	mu   sync.Mutex
	seen []string
}

// New serves the bare repositories under root for the rest of the test.
func New(t testing.TB, root string, opts Options) *Server {
	t.Helper()
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}
	backend := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		t.Skipf("git http-backend is not installed: %v", err)
	}
	s := &Server{}
	cgiH := &cgi.Handler{
		Path: backend,
		Dir:  root,
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null"},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("Authorization")
		s.mu.Lock()
		s.seen = append(s.seen, got)
		s.mu.Unlock()
		if opts.OnRequest != nil {
			opts.OnRequest(r)
		}
		if opts.Auth != "" && got != opts.Auth {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		cgiH.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Seen returns the Authorization header of every request so far ("" for
// none).
func (s *Server) Seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

// Cmdlines returns the command line of every process this user can see,
// by pid, arguments joined with spaces. Processes that exit while it reads
// are left out.
func Cmdlines() map[string]string {
	out := map[string]string{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		out[filepath.Base(d)] = strings.TrimRight(strings.ReplaceAll(string(b), "\x00", " "), " ")
	}
	return out
}
