package store_test

import (
	"context"
	"errors"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/tether-dev/tether/internal/store"
	"github.com/tether-dev/tether/internal/store/storetest"
)

func TestMain(m *testing.M) {
	if runChild() {
		return
	}
	// Never let a test reach for the EC2 metadata service or a developer's
	// real AWS credentials.
	storetest.UseTestCredentials()
	storetest.Main(m)
}

func open(t *testing.T, u string) store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), u)
	if err != nil {
		t.Fatalf("Open(%s): %v", u, err)
	}
	return s
}

// TestConformance runs the contract suite on every backend, with and
// without a prefix= parameter.
func TestConformance(t *testing.T) {
	t.Run("mem", func(t *testing.T) {
		t.Parallel()
		storetest.Run(t, func(t *testing.T) store.Store { return open(t, "mem://") })
	})
	t.Run("mem-prefix", func(t *testing.T) {
		t.Parallel()
		storetest.Run(t, func(t *testing.T) store.Store { return open(t, "mem://?prefix=sub/dir/") })
	})
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			storetest.Run(t, func(t *testing.T) store.Store { return open(t, backendURL(t, b.Name)) })
		})
		t.Run(b.Name+"-prefix", func(t *testing.T) {
			t.Parallel()
			storetest.Run(t, func(t *testing.T) store.Store { return open(t, addPrefix(backendURL(t, b.Name), "tenant/a/")) })
		})
	}
}

// backendURL returns a fresh URL of the named backend.
func backendURL(t *testing.T, name string) string {
	for _, b := range storetest.Backends(t) {
		if b.Name == name {
			return b.URL
		}
	}
	t.Fatalf("backend %s not available", name)
	return ""
}

func addPrefix(u, prefix string) string {
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + "prefix=" + prefix
}

// TestPrefixScopes checks that prefix= confines a store to its part of the
// bucket: its keys land under the prefix, and it sees nothing else.
func TestPrefixScopes(t *testing.T) {
	t.Parallel()
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			whole := open(t, b.URL)
			scoped := open(t, addPrefix(b.URL, "ns/s1/"))
			if err := whole.Put(ctx, "outside", []byte("o")); err != nil {
				t.Fatal(err)
			}
			if err := whole.Put(ctx, "ns/s10/other", []byte("o")); err != nil {
				t.Fatal(err)
			}
			if err := scoped.Put(ctx, "chunks/a", []byte("in")); err != nil {
				t.Fatal(err)
			}
			got, err := whole.Get(ctx, "ns/s1/chunks/a")
			if err != nil || string(got) != "in" {
				t.Fatalf("whole.Get(ns/s1/chunks/a) = %q, %v", got, err)
			}
			var keys []string
			if err := scoped.List(ctx, "", func(oi store.ObjectInfo) error { keys = append(keys, oi.Key); return nil }); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(keys, []string{"chunks/a"}) {
				t.Errorf("scoped List = %q, want [chunks/a]", keys)
			}
			if _, err := scoped.Get(ctx, "outside"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("scoped store sees an object outside its prefix: %v", err)
			}
			if !strings.Contains(scoped.String(), "prefix=ns") {
				t.Errorf("String() = %q does not show the prefix", scoped.String())
			}
		})
	}
}

func TestMinioVersionMatchesInstallScript(t *testing.T) {
	script, err := os.ReadFile("../../hack/install-minio.sh")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(script), `MINIO_VERSION="${MINIO_VERSION:-`+storetest.MinioVersion+`}"`) {
		t.Errorf("hack/install-minio.sh does not pin MinIO %s, which storetest.MinioVersion expects", storetest.MinioVersion)
	}
}

// TestMissingBucketIsNotMissingObject: S3 answers a HEAD on a missing bucket
// like a HEAD on a missing key. A restore that hears "not found" starts
// fresh, so a missing bucket must be an error of its own.
func TestMissingBucketIsNotMissingObject(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, b := range storetest.Backends(t) {
		if b.Name == "file" {
			continue
		}
		t.Run(b.Name, func(t *testing.T) {
			u, err := url.Parse(b.URL)
			if err != nil {
				t.Fatal(err)
			}
			u.Host = "no-such-bucket-" + u.Host
			s := open(t, u.String())
			_, err = s.Get(ctx, "k")
			if err == nil || errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), "does not exist") {
				t.Errorf("Get from a missing bucket = %v", err)
			}
			_, err = s.Stat(ctx, "k")
			if err == nil || errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), "does not exist") {
				t.Errorf("Stat in a missing bucket = %v", err)
			}
			err = s.Put(ctx, "k", []byte("x"))
			if err == nil || store.IsTransient(err) || !strings.Contains(err.Error(), "does not exist") {
				t.Errorf("Put into a missing bucket = %v (transient %v)", err, store.IsTransient(err))
			}
			if err := s.List(ctx, "", func(store.ObjectInfo) error { return nil }); err == nil {
				t.Errorf("List of a missing bucket succeeded")
			}
		})
	}
}

// TestConditionalPutOff: with conditional_put=false (S3 servers that ignore
// If-None-Match) PutIfAbsent still refuses a taken key, by looking first.
func TestConditionalPutOff(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := open(t, storetest.GofakeS3(t)+"&conditional_put=false")
	if err := s.PutIfAbsent(ctx, "k", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutIfAbsent(ctx, "k", []byte("2")); !errors.Is(err, store.ErrExists) {
		t.Errorf("second PutIfAbsent = %v, want ErrExists", err)
	}
	if got, _ := s.Get(ctx, "k"); string(got) != "1" {
		t.Errorf("object = %q, want 1", got)
	}
}
