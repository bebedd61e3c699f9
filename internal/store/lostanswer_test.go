package store_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/store"
	"github.com/tether-dev/tether/internal/store/storetest"
)

// TestS3LostAnswer puts a proxy between the client and a real S3 server
// (gofakes3) that forwards the first conditional PUT, lets the server store
// the object, and then drops the connection instead of passing the answer
// back. A bare store must report an error that is not ErrExists (it cannot
// know), and WithRetry must turn it into success by reading the object back.
func TestS3LostAnswer(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(storetest.GofakeS3(t))
	if err != nil {
		t.Fatal(err)
	}
	backend := u.Query().Get("endpoint")
	var dropped atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out, err := http.NewRequestWithContext(r.Context(), r.Method, backend+r.URL.RequestURI(), r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		out.Header = r.Header.Clone()
		out.ContentLength = r.ContentLength
		resp, err := http.DefaultTransport.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		if r.Method == http.MethodPut && r.Header.Get("If-None-Match") != "" && resp.StatusCode == http.StatusOK && dropped.Add(1) <= 2 {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(proxy.Close)
	q := u.Query()
	q.Set("endpoint", proxy.URL)
	u.RawQuery = q.Encode()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bare := open(t, u.String())
	err = bare.PutIfAbsent(ctx, "a", []byte("mine"))
	if err == nil || errors.Is(err, store.ErrExists) || !store.IsTransient(err) {
		t.Fatalf("PutIfAbsent with the answer lost = %v, want a transient error", err)
	}
	if got, err := bare.Get(ctx, "a"); err != nil || string(got) != "mine" {
		t.Fatalf("the server did not store the object: %q, %v", got, err)
	}

	retrying := store.WithRetry(bare, store.RetryOptions{InitialDelay: time.Millisecond})
	if err := retrying.PutIfAbsent(ctx, "b", []byte("mine")); err != nil {
		t.Fatalf("WithRetry PutIfAbsent with the answer lost = %v, want success", err)
	}
	if err := retrying.PutIfAbsent(ctx, "b", []byte("other")); !errors.Is(err, store.ErrExists) || strings.Contains(err.Error(), "torn") {
		t.Fatalf("a later PutIfAbsent = %v, want a plain ErrExists", err)
	}
	if n := dropped.Load(); n < 2 {
		t.Fatalf("the proxy dropped %d answers, want 2", n)
	}
}
