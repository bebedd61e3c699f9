package store_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/store"
	"github.com/tether-dev/tether/internal/store/storetest"
)

// TestGetLimit: an object within the limit is returned whole; a larger one
// is refused with ErrTooLarge, naming the key, straight and through the
// retry wrapper (which must not retry it) and on a store without
// LimitGetter; a missing one is ErrNotFound.
func TestGetLimit(t *testing.T) {
	ctx := context.Background()
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			raw, err := store.Open(ctx, b.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			retries := 0
			wrapped := store.WithRetry(raw, store.RetryOptions{OnRetry: func(string, string, int, error, time.Duration) { retries++ }})
			data := bytes.Repeat([]byte("x"), 1000)
			if err := raw.Put(ctx, "a/obj", data); err != nil {
				t.Fatal(err)
			}
			// Embedding only the interface hides GetLimit: the fallback path.
			fallback := struct{ store.Store }{raw}
			for name, s := range map[string]store.Store{"plain": raw, "retry": wrapped, "stat-then-get": fallback} {
				got, err := store.GetLimit(ctx, s, "a/obj", 1000)
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("%s: GetLimit at the object's size: %d bytes, %v", name, len(got), err)
				}
				_, err = store.GetLimit(ctx, s, "a/obj", 999)
				if !errors.Is(err, store.ErrTooLarge) || !strings.Contains(err.Error(), "a/obj") {
					t.Fatalf("%s: GetLimit below the object's size: %v, want ErrTooLarge naming the key", name, err)
				}
				if _, err := store.GetLimit(ctx, s, "a/missing", 10); !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("%s: GetLimit of a missing object: %v", name, err)
				}
			}
			if retries != 0 {
				t.Fatalf("the retry wrapper retried %d times", retries)
			}
		})
	}
}
