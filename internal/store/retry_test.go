package store_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/tether-dev/tether/internal/store"
	"github.com/tether-dev/tether/internal/store/storefault"
)

var fast = store.RetryOptions{InitialDelay: time.Millisecond, MaxDelay: 4 * time.Millisecond, Seed: 1}

func faulty(t *testing.T, rules ...storefault.Rule) (*storefault.Injector, store.Store) {
	t.Helper()
	inj := storefault.New(open(t, "mem://"), 1)
	inj.Add(rules...)
	return inj, store.WithRetry(inj, fast)
}

func TestRetryTransient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	inj, _ := faulty(t,
		storefault.Rule{Op: storefault.Put, Nth: 1, Fault: storefault.Fail},
		storefault.Rule{Op: storefault.Put, Nth: 2, Fault: storefault.DropWrite},
		storefault.Rule{Op: storefault.Get, Count: 2, Fault: storefault.Fail},
	)
	var retries []string
	opts := fast
	opts.OnRetry = func(op, key string, attempt int, err error, wait time.Duration) {
		retries = append(retries, fmt.Sprintf("%s %s #%d", op, key, attempt))
	}
	s := store.WithRetry(inj, opts)
	if err := s.Put(ctx, "k", []byte("data")); err != nil {
		t.Fatalf("Put through two transient faults: %v", err)
	}
	got, err := s.Get(ctx, "k")
	if err != nil || string(got) != "data" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	if inj.Calls(storefault.Put) != 3 || inj.Calls(storefault.Get) != 3 {
		t.Errorf("calls: put %d get %d, want 3 and 3", inj.Calls(storefault.Put), inj.Calls(storefault.Get))
	}
	if want := "put k #1,put k #2,get k #1,get k #2"; strings.Join(retries, ",") != want {
		t.Errorf("OnRetry calls = %q, want %q", retries, want)
	}
}

func TestRetryGivesUp(t *testing.T) {
	t.Parallel()
	inj := storefault.New(open(t, "mem://"), 1)
	inj.Add(storefault.Rule{Op: storefault.Get, Fault: storefault.Fail})
	opts := fast
	opts.MaxAttempts = 4
	_, err := store.WithRetry(inj, opts).Get(context.Background(), "k")
	if !storefault.IsInjected(err) || !strings.Contains(err.Error(), "gave up after 4 attempts") {
		t.Errorf("Get = %v, want the injected error after 4 attempts", err)
	}
	if inj.Calls(storefault.Get) != 4 {
		t.Errorf("%d attempts, want 4", inj.Calls(storefault.Get))
	}

	// The time bound stops retries before the attempt bound does.
	inj2 := storefault.New(open(t, "mem://"), 1)
	inj2.Add(storefault.Rule{Fault: storefault.Fail})
	start := time.Now()
	err = store.WithRetry(inj2, store.RetryOptions{InitialDelay: 20 * time.Millisecond, MaxElapsed: 100 * time.Millisecond, MaxAttempts: 100}).Put(context.Background(), "k", nil)
	if !strings.Contains(err.Error(), "retry time limit") || time.Since(start) > 2*time.Second {
		t.Errorf("Put = %v after %s, want a give-up at the time limit", err, time.Since(start))
	}
}

func TestRetryNotForPermanentErrors(t *testing.T) {
	t.Parallel()
	inj, s := faulty(t)
	ctx := context.Background()
	if _, err := s.Get(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "bad//key", nil); !errors.Is(err, store.ErrInvalidKey) {
		t.Fatal(err)
	}
	if err := s.PutIfAbsent(ctx, "k", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutIfAbsent(ctx, "k", []byte("2")); !errors.Is(err, store.ErrExists) {
		t.Fatal(err)
	}
	if n := inj.Calls(storefault.Any); n != 4 {
		t.Errorf("%d calls reached the store, want 4 (no retries)", n)
	}
}

func TestRetryStopsOnCancel(t *testing.T) {
	t.Parallel()
	inj := storefault.New(open(t, "mem://"), 1)
	inj.Add(storefault.Rule{Fault: storefault.Fail})
	s := store.WithRetry(inj, store.RetryOptions{InitialDelay: time.Hour, MaxDelay: time.Hour, MaxElapsed: 10 * time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.Put(ctx, "k", nil)
	if !errors.Is(err, context.DeadlineExceeded) || !storefault.IsInjected(err) || time.Since(start) > 5*time.Second {
		t.Errorf("Put = %v after %s, want the fault and the deadline, promptly", err, time.Since(start))
	}
}

// TestRetryAttemptTimeout: a call that hangs (a dead connection) is cut off
// by AttemptTimeout and retried.
func TestRetryAttemptTimeout(t *testing.T) {
	t.Parallel()
	inj := storefault.New(open(t, "mem://"), 1)
	inj.Add(storefault.Rule{Op: storefault.Put, Nth: 1, Fault: storefault.Stall})
	opts := fast
	opts.AttemptTimeout = 500 * time.Millisecond // long enough for a loaded machine
	s := store.WithRetry(inj, opts)
	if err := s.Put(context.Background(), "k", []byte("v")); err != nil {
		t.Fatalf("Put after a stalled attempt: %v", err)
	}
	if inj.Calls(storefault.Put) != 2 {
		t.Errorf("%d attempts, want 2", inj.Calls(storefault.Put))
	}
}

// TestRetryPutIfAbsentLostAck: the first attempt wrote the object but its
// answer was lost; the retry finds the key taken by our own bytes and must
// report success, not ErrExists.
func TestRetryPutIfAbsentLostAck(t *testing.T) {
	t.Parallel()
	inj, s := faulty(t, storefault.Rule{Op: storefault.PutIfAbsent, Nth: 1, Fault: storefault.LostAck})
	ctx := context.Background()
	if err := s.PutIfAbsent(ctx, "k", []byte("mine")); err != nil {
		t.Fatalf("PutIfAbsent with a lost answer = %v, want nil", err)
	}
	if inj.Calls(storefault.PutIfAbsent) != 2 {
		t.Errorf("%d attempts, want 2", inj.Calls(storefault.PutIfAbsent))
	}
	if err := s.PutIfAbsent(ctx, "k", []byte("mine")); !errors.Is(err, store.ErrExists) {
		t.Errorf("a later PutIfAbsent that did not fail first = %v, want ErrExists", err)
	}
}

// TestRetryPutIfAbsentTorn: a non-atomic backend kept half of a failed
// write; the retry must not call that a success.
func TestRetryPutIfAbsentTorn(t *testing.T) {
	t.Parallel()
	_, s := faulty(t, storefault.Rule{Op: storefault.PutIfAbsent, Nth: 1, Fault: storefault.TornWrite})
	ctx := context.Background()
	err := s.PutIfAbsent(ctx, "k", []byte("0123456789"))
	if !errors.Is(err, store.ErrExists) || !strings.Contains(err.Error(), "torn write") {
		t.Fatalf("PutIfAbsent after a torn write = %v, want ErrExists naming a torn write", err)
	}
	if got, _ := s.Get(ctx, "k"); string(got) != "01234" {
		t.Errorf("stored %q, want the torn half 01234", got)
	}
	// Put repairs it: overwrites are idempotent.
	_, s = faulty(t, storefault.Rule{Op: storefault.Put, Nth: 1, Fault: storefault.TornWrite})
	if err := s.Put(ctx, "k", []byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, "k"); string(got) != "0123456789" {
		t.Errorf("Put after a torn attempt stored %q", got)
	}
}

// TestRetryRandomFaults runs a mixed workload through a store failing a
// third of all calls at random and checks every result against a model.
func TestRetryRandomFaults(t *testing.T) {
	t.Parallel()
	inj := storefault.New(open(t, "mem://"), 7)
	inj.Add(storefault.Rule{Prob: 0.3, Fault: storefault.Fail}, storefault.Rule{Op: storefault.PutIfAbsent, Prob: 0.2, Fault: storefault.LostAck})
	opts := fast
	opts.MaxAttempts = 30
	s := store.WithRetry(inj, opts)
	ctx := context.Background()
	model := map[string]string{}
	for i := range 300 {
		key := fmt.Sprintf("k/%d", i%23)
		val := fmt.Sprintf("v%d", i)
		switch i % 4 {
		case 0:
			if err := s.Put(ctx, key, []byte(val)); err != nil {
				t.Fatalf("op %d Put: %v", i, err)
			}
			model[key] = val
		case 1:
			err := s.PutIfAbsent(ctx, key, []byte(val))
			_, had := model[key]
			switch {
			case had && !errors.Is(err, store.ErrExists), !had && err != nil:
				t.Fatalf("op %d PutIfAbsent(%s) = %v, key existed: %v", i, key, err, had)
			case !had:
				model[key] = val
			}
		case 2:
			got, err := s.Get(ctx, key)
			if want, ok := model[key]; ok && (err != nil || string(got) != want) || !ok && !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("op %d Get(%s) = %q, %v; model has %q", i, key, got, err, model[key])
			}
		case 3:
			if i%8 == 3 {
				if err := s.Delete(ctx, key); err != nil {
					t.Fatalf("op %d Delete: %v", i, err)
				}
				delete(model, key)
			}
		}
	}
	n := 0
	if err := s.List(ctx, "", func(store.ObjectInfo) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != len(model) {
		t.Errorf("List found %d objects, model has %d", n, len(model))
	}
	if inj.Hits() < 50 {
		t.Errorf("only %d faults injected; the test is not testing much", inj.Hits())
	}
	t.Logf("%d calls, %d faults injected", inj.Calls(storefault.Any), inj.Hits())
}

func TestIsTransient(t *testing.T) {
	t.Parallel()
	resp := func(code int) error {
		return &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: code}}, Err: errors.New("server said no")}}
	}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{fmt.Errorf("get: %w", store.ErrNotFound), false},
		{fmt.Errorf("put: %w", store.ErrExists), false},
		{store.ValidateKey("a//b"), false},
		{context.Canceled, false},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), false},
		{&fs.PathError{Op: "open", Path: "/x", Err: syscall.EACCES}, false},
		{&fs.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC}, false},
		{&fs.PathError{Op: "read", Path: "/x", Err: syscall.EIO}, true},
		{&storefault.Error{Op: storefault.Get, Key: "k"}, true},
		{errors.New("connection reset by peer"), true},
		{resp(503), true},
		{resp(500), true},
		{resp(429), true},
		{resp(403), false},
		{resp(400), false},
	} {
		if got := store.IsTransient(tc.err); got != tc.want {
			t.Errorf("IsTransient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestTransientFromDeadServer: an S3 endpoint nobody listens on gives an
// error a retry may fix, not ErrNotFound.
func TestTransientFromDeadServer(t *testing.T) {
	t.Parallel()
	s := open(t, "s3://bkt?endpoint=http://127.0.0.1:1&use_path_style=true&region=us-east-1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := s.Get(ctx, "k")
	if err == nil || errors.Is(err, store.ErrNotFound) || !store.IsTransient(err) {
		t.Errorf("Get from a dead endpoint = %v (transient %v)", err, store.IsTransient(err))
	}
}
