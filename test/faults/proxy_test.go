package faults

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/store"
	"github.com/tether-dev/tether/internal/store/storetest"
)

// TestProxy checks each of the proxy's faults against a real S3 client (the
// store's) on an in-process S3 server: a latency delays and ends at Clear,
// a 5xx burst fails calls without reaching the server, a lost ack leaves
// the write done and the client with an error.
func TestProxy(t *testing.T) {
	backend := storetest.GofakeS3(t)
	u, err := url.Parse(backend)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewProxy(u.Query().Get("endpoint"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	q := u.Query()
	q.Set("endpoint", p.URL)
	u.RawQuery = q.Encode()
	ctx := context.Background()
	// The S3 client retries by itself: a fault may see a call more than once.
	via, err := store.Open(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	direct, err := store.Open(ctx, backend)
	if err != nil {
		t.Fatal(err)
	}
	if err := via.Put(ctx, "k/pass", []byte("x")); err != nil {
		t.Fatalf("put through the proxy with no fault: %v", err)
	}

	p.Latency(time.Second)
	t0 := time.Now()
	if err := via.Put(ctx, "k/slow", []byte("x")); err != nil || time.Since(t0) < time.Second {
		t.Fatalf("latency 1s: put took %s, err %v", time.Since(t0), err)
	}
	p.Latency(time.Hour)
	go func() { time.Sleep(300 * time.Millisecond); p.Clear() }()
	t0 = time.Now()
	if err := via.Put(ctx, "k/cleared", []byte("x")); err != nil || time.Since(t0) > 30*time.Second {
		t.Fatalf("latency cleared after 300ms: put took %s, err %v", time.Since(t0), err)
	}

	p.Errors()
	err = via.Put(ctx, "k/failed", []byte("x"))
	if err == nil || !store.IsTransient(err) {
		t.Fatalf("5xx burst: put returned %v, want a transient error", err)
	}
	if _, err := direct.Stat(ctx, "k/failed"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("5xx burst: the failed put reached the server (stat: %v)", err)
	}
	p.Clear()

	p.LostAcks(1)
	err = via.Put(ctx, "k/lost", []byte("written"))
	if err == nil {
		t.Fatal("lost ack: put succeeded, want an error")
	}
	p.Clear()
	data, err := direct.Get(ctx, "k/lost")
	if err != nil || string(data) != "written" {
		t.Fatalf("lost ack: the write was not done: %q, %v", data, err)
	}
	if d, f, l := p.Counts(); d != 2 || f < 1 || l < 1 {
		t.Errorf("counts: delayed %d failed %d dropped %d, want 2, >=1, >=1", d, f, l)
	}
}
