package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSendToken: tether send takes the runner token from a file or the
// environment and sends it; a token on the command line is refused without
// being echoed.
func TestSendToken(t *testing.T) {
	const token = "send-test-token-0123456789"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
			return
		}
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "id: 1:0\nevent: RUN_STARTED\ndata: {\"type\":\"RUN_STARTED\",\"threadId\":\"main\",\"runId\":\"r\"}\n\n"+
			"id: 2:0\nevent: RUN_FINISHED\ndata: {\"type\":\"RUN_FINISHED\",\"threadId\":\"main\",\"runId\":\"r\"}\n\n")
	}))
	defer srv.Close()

	t.Setenv("TETHER_RUNNER_TOKEN", "")
	if code, _, errs := tether(t, "send", "--url", srv.URL, "--token", token, "hi"); code != exitUsage || strings.Contains(errs, token) || !strings.Contains(errs, "TETHER_RUNNER_TOKEN") {
		t.Errorf("--token: exit %d, stderr %q; want a usage error pointing at TETHER_RUNNER_TOKEN, without the token", code, errs)
	}
	if code, _, _ := tether(t, "send", "--url", srv.URL, "hi"); code == exitOK {
		t.Errorf("no token: exit 0 from a runner that answers 401")
	}
	f := filepath.Join(t.TempDir(), "token")
	os.WriteFile(f, []byte(token+"\n"), 0o600)
	if code, out, errs := tether(t, "send", "--url", srv.URL, "--token-file", f, "hi"); code != exitOK || !strings.Contains(out, "run finished") {
		t.Errorf("--token-file: exit %d, %q %q", code, out, errs)
	}
	t.Setenv("TETHER_RUNNER_TOKEN", token)
	if code, out, errs := tether(t, "send", "--url", srv.URL, "hi"); code != exitOK || !strings.Contains(out, "run finished") {
		t.Errorf("TETHER_RUNNER_TOKEN: exit %d, %q %q", code, out, errs)
	}
}
