package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/store"
)

// Run checks the store.Store contract on stores made by open, which must
// return a new, empty store on every call (each subtest opens its own).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	fresh := func(t *testing.T) store.Store {
		s := open(t)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"PutGetStat", testPutGetStat},
		{"Overwrite", testOverwrite},
		{"EmptyObject", testEmpty},
		{"NotFound", testNotFound},
		{"Delete", testDelete},
		{"List", testList},
		{"ListStopsOnError", testListStops},
		{"PutIfAbsent", testPutIfAbsent},
		{"PutIfAbsentRace", testPutIfAbsentRace},
		{"Large", testLarge},
		{"UnicodeKeys", testUnicode},
		{"InvalidKeys", testInvalidKeys},
		{"CanceledContext", testCanceled},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, fresh(t)) })
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// RandomBytes returns n reproducible pseudo-random bytes.
func RandomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

func mustPut(t *testing.T, s store.Store, key string, data []byte) {
	t.Helper()
	if err := s.Put(ctxT(t), key, data); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func mustGet(t *testing.T, s store.Store, key string, want []byte) {
	t.Helper()
	got, err := s.Get(ctxT(t), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Get(%q) = %d bytes (sha256 %x), want %d bytes (sha256 %x)", key, len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
	}
}

// listAll returns key -> size for everything under prefix.
func listAll(t *testing.T, s store.Store, prefix string) map[string]int64 {
	t.Helper()
	m := map[string]int64{}
	err := s.List(ctxT(t), prefix, func(oi store.ObjectInfo) error {
		if _, dup := m[oi.Key]; dup {
			t.Errorf("List(%q) returned %q twice", prefix, oi.Key)
		}
		m[oi.Key] = oi.Size
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return m
}

func keysOf(m map[string]int64) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func testPutGetStat(t *testing.T, s store.Store) {
	data := []byte("hello, tether")
	before := time.Now().Add(-time.Hour)
	mustPut(t, s, "a/b/obj", data)
	mustGet(t, s, "a/b/obj", data)
	oi, err := s.Stat(ctxT(t), "a/b/obj")
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if oi.Key != "a/b/obj" || oi.Size != int64(len(data)) {
		t.Errorf("Stat = %+v, want key a/b/obj size %d", oi, len(data))
	}
	// Clocks of remote servers may be off a little; an hour is plenty.
	if oi.ModTime.Before(before) || oi.ModTime.After(time.Now().Add(time.Hour)) {
		t.Errorf("Stat ModTime = %v, not near now", oi.ModTime)
	}
	// The store must not alias the caller's buffer.
	data[0] = 'J'
	mustGet(t, s, "a/b/obj", []byte("hello, tether"))
}

func testOverwrite(t *testing.T, s store.Store) {
	mustPut(t, s, "k", []byte("first version, longer"))
	mustPut(t, s, "k", []byte("second"))
	mustGet(t, s, "k", []byte("second"))
	if got := listAll(t, s, ""); len(got) != 1 || got["k"] != 6 {
		t.Errorf("List after overwrite = %v, want k:6 only", got)
	}
}

func testEmpty(t *testing.T, s store.Store) {
	mustPut(t, s, "empty", nil)
	mustGet(t, s, "empty", []byte{})
	oi, err := s.Stat(ctxT(t), "empty")
	if err != nil || oi.Size != 0 {
		t.Fatalf("Stat(empty) = %+v, %v; want size 0", oi, err)
	}
}

func testNotFound(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	mustPut(t, s, "present/x", []byte("x"))
	for _, key := range []string{"missing", "present/missing", "present", "present/x/below"} {
		_, err := s.Get(ctx, key)
		checkNotFound(t, s, "Get", key, err)
		_, err = s.Stat(ctx, key)
		checkNotFound(t, s, "Stat", key, err)
		if err := s.Delete(ctx, key); err != nil {
			t.Errorf("Delete(%q) of an absent key = %v, want nil", key, err)
		}
	}
	mustGet(t, s, "present/x", []byte("x"))
}

func checkNotFound(t *testing.T, s store.Store, op, key string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s(%q) = %v, want ErrNotFound", op, key, err)
		return
	}
	if !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), s.String()) {
		t.Errorf("%s(%q) error %q does not name the key and the store %s", op, key, err, s.String())
	}
}

func testDelete(t *testing.T, s store.Store) {
	mustPut(t, s, "d/1", []byte("1"))
	mustPut(t, s, "d/2", []byte("2"))
	if err := s.Delete(ctxT(t), "d/1"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := s.Get(ctxT(t), "d/1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
	if got := keysOf(listAll(t, s, "")); !slices.Equal(got, []string{"d/2"}) {
		t.Errorf("List after Delete = %v, want [d/2]", got)
	}
	// A deleted key can be written again, also with PutIfAbsent.
	if err := s.PutIfAbsent(ctxT(t), "d/1", []byte("again")); err != nil {
		t.Fatalf("PutIfAbsent after Delete: %v", err)
	}
	mustGet(t, s, "d/1", []byte("again"))
}

func testList(t *testing.T, s store.Store) {
	objs := map[string]string{"p/a": "1", "p/b/c": "22", "p/bb": "333", "q/a": "4444", "pa": "55555", "p/b/d/e/f": "6"}
	for k, v := range objs {
		mustPut(t, s, k, []byte(v))
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"", []string{"p/a", "p/b/c", "p/b/d/e/f", "p/bb", "pa", "q/a"}},
		{"p/", []string{"p/a", "p/b/c", "p/b/d/e/f", "p/bb"}},
		{"p", []string{"p/a", "p/b/c", "p/b/d/e/f", "p/bb", "pa"}},
		{"p/b", []string{"p/b/c", "p/b/d/e/f", "p/bb"}},
		{"p/b/", []string{"p/b/c", "p/b/d/e/f"}},
		{"p/b/d/e/f", []string{"p/b/d/e/f"}},
		{"q/a", []string{"q/a"}},
		{"zzz", nil},
		{"p/zzz/", nil},
	} {
		got := listAll(t, s, tc.prefix)
		if !slices.Equal(keysOf(got), tc.want) {
			t.Errorf("List(%q) = %v, want %v", tc.prefix, keysOf(got), tc.want)
		}
		for k, size := range got {
			if size != int64(len(objs[k])) {
				t.Errorf("List(%q): %s has size %d, want %d", tc.prefix, k, size, len(objs[k]))
			}
		}
	}
}

func testListStops(t *testing.T, s store.Store) {
	for i := range 5 {
		mustPut(t, s, fmt.Sprintf("s/%d", i), []byte("x"))
	}
	stop := errors.New("stop here")
	calls := 0
	err := s.List(ctxT(t), "s/", func(store.ObjectInfo) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("List with fn failing: err=%v calls=%d, want the fn's error after 1 call", err, calls)
	}
}

func testPutIfAbsent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if err := s.PutIfAbsent(ctx, "once", []byte("first")); err != nil {
		t.Fatalf("PutIfAbsent on a new key: %v", err)
	}
	err := s.PutIfAbsent(ctx, "once", []byte("second"))
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("PutIfAbsent on a taken key = %v, want ErrExists", err)
	}
	if !strings.Contains(err.Error(), "once") || !strings.Contains(err.Error(), s.String()) {
		t.Errorf("ErrExists error %q does not name key and store", err)
	}
	mustGet(t, s, "once", []byte("first"))
	// A Put after PutIfAbsent still replaces.
	mustPut(t, s, "once", []byte("third"))
	mustGet(t, s, "once", []byte("third"))
}

func testPutIfAbsentRace(t *testing.T, s store.Store) {
	const writers, keys = 16, 4
	ctx := ctxT(t)
	for k := range keys {
		key := fmt.Sprintf("race/%d", k)
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, writers)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[w] = s.PutIfAbsent(ctx, key, fmt.Appendf(nil, "writer %d of key %d", w, k))
			}()
		}
		close(start)
		wg.Wait()
		winner := -1
		for w, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Errorf("key %s: writers %d and %d both won PutIfAbsent", key, winner, w)
			case err == nil:
				winner = w
			case !errors.Is(err, store.ErrExists):
				t.Errorf("key %s writer %d: %v, want nil or ErrExists", key, w, err)
			}
		}
		if winner < 0 {
			t.Fatalf("key %s: no writer won PutIfAbsent", key)
		}
		mustGet(t, s, key, fmt.Appendf(nil, "writer %d of key %d", winner, k))
	}
}

func testLarge(t *testing.T, s store.Store) {
	data := RandomBytes(32, 32<<20)
	mustPut(t, s, "large/put", data)
	mustGet(t, s, "large/put", data)
	if oi, err := s.Stat(ctxT(t), "large/put"); err != nil || oi.Size != int64(len(data)) {
		t.Errorf("Stat(large) = %+v, %v", oi, err)
	}
	if err := s.PutIfAbsent(ctxT(t), "large/once", data); err != nil {
		t.Fatalf("PutIfAbsent(large): %v", err)
	}
	// The conditional write must hold for large objects too (on S3 a
	// multipart upload could bypass it).
	other := RandomBytes(33, 32<<20)
	if err := s.PutIfAbsent(ctxT(t), "large/once", other); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second PutIfAbsent(large) = %v, want ErrExists", err)
	}
	mustGet(t, s, "large/once", data)
}

func testUnicode(t *testing.T, s store.Store) {
	keys := []string{
		"ünïcødé/日本語/ファイル.txt",
		"emoji/🦀🚀",
		"spaces in/a name with spaces",
		"percent%20and+plus=&?#",
		"quotes/'single' \"double\"",
		".hidden/..dots/.x",
	}
	for i, k := range keys {
		mustPut(t, s, k, []byte{byte(i)})
	}
	got := listAll(t, s, "")
	want := slices.Clone(keys)
	sort.Strings(want)
	if !slices.Equal(keysOf(got), want) {
		t.Errorf("List = %q, want %q", keysOf(got), want)
	}
	for i, k := range keys {
		mustGet(t, s, k, []byte{byte(i)})
	}
	if got := keysOf(listAll(t, s, "ünïcødé/日本")); !slices.Equal(got, keys[:1]) {
		t.Errorf("List(unicode prefix) = %q", got)
	}
}

func testInvalidKeys(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	for _, key := range []string{"", "/abs", "a//b", "../x", "a/../b", "a/./b", ".", "..", "trailing/", "back\\slash", "ctl\x01", "nul\x00", ".tether-tmp-x", "a/.tether-tmp-1", strings.Repeat("x", 256), "bad\xffutf8"} {
		if err := s.Put(ctx, key, []byte("x")); !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("Put(%q) = %v, want ErrInvalidKey", key, err)
		}
		if err := s.PutIfAbsent(ctx, key, []byte("x")); !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("PutIfAbsent(%q) = %v, want ErrInvalidKey", key, err)
		}
		if _, err := s.Get(ctx, key); !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("Get(%q) = %v, want ErrInvalidKey", key, err)
		}
	}
	if err := s.List(ctx, "../", func(store.ObjectInfo) error { return nil }); !errors.Is(err, store.ErrInvalidKey) {
		t.Errorf("List(../) = %v, want ErrInvalidKey", err)
	}
	if got := listAll(t, s, ""); len(got) != 0 {
		t.Errorf("invalid keys left objects behind: %v", keysOf(got))
	}
}

func testCanceled(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Put(ctx, "canceled", []byte("x")); err == nil {
		t.Errorf("Put with a canceled context succeeded")
	}
	if err := s.PutIfAbsent(ctx, "canceled", []byte("x")); err == nil {
		t.Errorf("PutIfAbsent with a canceled context succeeded")
	}
	if _, err := s.Get(ctxT(t), "canceled"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a write with a canceled context left an object behind: Get = %v", err)
	}
}
