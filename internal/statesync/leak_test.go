package statesync

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/redact"
	"github.com/tether-dev/tether/internal/snapshot"
	"github.com/tether-dev/tether/internal/store"
	"github.com/tether-dev/tether/internal/store/storetest"
)

// The test credentials; none may appear in any output.
const (
	testKeyID  = "AKIAtesttoken"
	testSecret = "s3cr3t-TOKEN-xyz"
	testGHTok  = "ghp_0123456789abcdefghijABCDEFGHIJ012345"
)

func assertNoSecret(t *testing.T, what, got string) {
	t.Helper()
	for _, s := range []string{testKeyID, testSecret, "s3cr3t", testGHTok} {
		if strings.Contains(got, s) {
			t.Errorf("%s leaks %q:\n%s", what, s, got)
		}
	}
}

// leakyStore fails every write with an error that quotes credentials, as an
// HTTP client or a proxy may: whatever reaches the sync's outputs must be
// redacted there, whoever wrote the message.
type leakyStore struct{ store.Store }

func (l leakyStore) err(key string) error {
	return fmt.Errorf(`Put "http://%s:%s@127.0.0.1:9000/bkt/%s": proxy answered 407 to "Authorization: Bearer %s"`, testKeyID, testSecret, key, testGHTok)
}
func (l leakyStore) Put(_ context.Context, key string, _ []byte) error { return l.err(key) }
func (l leakyStore) PutIfAbsent(_ context.Context, key string, _ []byte) error {
	return l.err(key)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// A failing save's error reaches /healthz (503 with the reason) and the log;
// neither shows the credentials it quoted, and /metrics carries none.
func TestSyncOutputsRedacted(t *testing.T) {
	ws := t.TempDir()
	must(t, os.WriteFile(filepath.Join(ws, "work.txt"), []byte("work\n"), 0o644))
	st, err := store.Open(context.Background(), storetest.FileURL(t.TempDir()))
	must(t, err)
	defer st.Close()
	repo, err := snapshot.OpenRepo(leakyStore{st}, "default", "leak")
	must(t, err)
	var logs syncBuffer
	s, err := New(testConfig(ws), repo, slog.New(redact.Handler(slog.NewTextHandler(&logs, nil))))
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	var health string
	deadline := time.Now().Add(10 * time.Second)
	for {
		rec := httptest.NewRecorder()
		s.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		if rec.Code == 503 {
			health = rec.Body.String()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz never reported the failing saves: %d %s", rec.Code, rec.Body.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	rec := httptest.NewRecorder()
	s.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	metrics := rec.Body.String()
	cancel()
	<-done

	assertNoSecret(t, "/healthz", health)
	if !strings.Contains(health, "127.0.0.1:9000/bkt/") || !strings.Contains(health, "Authorization: Bearer [redacted]") {
		t.Errorf("/healthz lost the reason along with the credentials: %s", health)
	}
	assertNoSecret(t, "/metrics", metrics)
	if !strings.Contains(metrics, `tether_sync_errors_total{kind="save"}`) {
		t.Errorf("/metrics does not count the failed saves:\n%s", metrics)
	}
	assertNoSecret(t, "the sync's log", logs.String())
	if !strings.Contains(logs.String(), "127.0.0.1:9000/bkt/") {
		t.Errorf("the log does not show the failing saves:\n%s", logs.String())
	}
}
