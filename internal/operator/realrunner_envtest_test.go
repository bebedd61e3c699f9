package operator

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/runner"
)

// codeRecorder keeps the status code a handler answered with.
type codeRecorder struct {
	http.ResponseWriter
	code int
}

func (c *codeRecorder) WriteHeader(code int) { c.code = code; c.ResponseWriter.WriteHeader(code) }

// TestObserverAuthenticatesToRealRunner: the runner's own HTTP handler,
// given the token the operator put in the session's Secret (as the pod's
// env from secretKeyRef gives it), answers 401 to a request without it, and
// the operator's observer, reading the same Secret, gets 200 from it.
func TestObserverAuthenticatesToRealRunner(t *testing.T) {
	needEnvtest(t)
	t.Parallel()
	ns := newNamespace(t)
	r, err := runner.New(runner.Config{Workspace: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var h atomic.Value // the runner's handler, once the Secret is known
	var mu sync.Mutex
	codes := map[string][]int{} // "with"/"without" token -> codes
	port := serve(t, func(w http.ResponseWriter, req *http.Request) {
		hh, _ := h.Load().(http.Handler)
		if hh == nil {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		rec := &codeRecorder{ResponseWriter: w, code: http.StatusOK}
		hh.ServeHTTP(rec, req)
		kind := "without"
		if req.Header.Get("Authorization") != "" {
			kind = "with"
		}
		mu.Lock()
		codes[kind] = append(codes[kind], rec.code)
		mu.Unlock()
	})
	fakeObs.useReal(ns, &HTTPObserver{RunnerPort: port, SyncPort: 1, RunnerToken: SecretTokens(opClient),
		Client: &http.Client{Timeout: 2 * time.Second}})
	create(t, newSession(ns, "real"))
	waitPod(t, ns, "real-0")
	_, tok := waitTokenSecret(t, ns, "real")
	h.Store(runner.Handler(r, tok))

	expect401(t, port)
	runPodOnLoopback(t, ns, "real-0")
	eventually(t, 15*time.Second, "the observer's authenticated GET /status", func() string {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range codes["with"] {
			if c == http.StatusOK {
				return ""
			}
		}
		return fmt.Sprintf("answers so far: %v", codes)
	})
	mu.Lock()
	defer mu.Unlock()
	for _, c := range codes["with"] {
		if c != http.StatusOK {
			t.Errorf("the runner refused the observer's token: %v", codes)
		}
	}
}
