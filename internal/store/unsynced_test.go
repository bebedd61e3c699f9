package store

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

func TestPutIfAbsentUnsynced(t *testing.T) {
	ctx := context.Background()
	for _, url := range []string{"file://" + t.TempDir(), "mem://"} {
		base, err := Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []Store{base, WithRetry(base, RetryOptions{})} {
			key := "objects/ab/" + t.Name() + s.String()[:4]
			if s != base {
				key += "-retry"
			}
			if err := PutIfAbsentUnsynced(ctx, s, key, []byte("v1")); err != nil {
				t.Fatalf("%s: %v", url, err)
			}
			got, err := s.Get(ctx, key)
			if err != nil || !bytes.Equal(got, []byte("v1")) {
				t.Fatalf("%s: unsynced object not visible: %q %v", url, got, err)
			}
			if err := PutIfAbsentUnsynced(ctx, s, key, []byte("v2")); !errors.Is(err, ErrExists) {
				t.Fatalf("%s: second unsynced write: %v, want ErrExists", url, err)
			}
			if err := Sync(ctx, s); err != nil {
				t.Fatalf("%s: sync: %v", url, err)
			}
		}
		if _, ok := base.(UnsyncedWriter); ok != (url != "mem://") {
			t.Fatalf("%s: UnsyncedWriter = %v", url, ok)
		}
	}
}
