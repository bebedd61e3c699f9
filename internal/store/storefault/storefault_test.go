package storefault_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/store"
	"github.com/tether-dev/tether/internal/store/storefault"
)

func newInj(t *testing.T, seed uint64, rules ...storefault.Rule) *storefault.Injector {
	t.Helper()
	s, err := store.Open(context.Background(), "mem://")
	if err != nil {
		t.Fatal(err)
	}
	inj := storefault.New(s, seed)
	inj.Add(rules...)
	return inj
}

func TestNthCountAndKeys(t *testing.T) {
	ctx := context.Background()
	inj := newInj(t, 1,
		storefault.Rule{Op: storefault.Put, KeyPrefix: "chunks/", Nth: 2},
		storefault.Rule{Op: storefault.Get, Key: "manifests/*", Count: 2},
	)
	var failed []string
	for _, k := range []string{"chunks/a", "other", "chunks/b", "chunks/c", "manifests/1"} {
		if err := inj.Put(ctx, k, []byte(k)); err != nil {
			if !storefault.IsInjected(err) || !store.IsTransient(err) {
				t.Fatalf("Put(%s) = %v, want an injected transient error", k, err)
			}
			failed = append(failed, k)
		}
	}
	if strings.Join(failed, ",") != "chunks/b" {
		t.Errorf("failed puts = %v, want only the 2nd chunks/ put", failed)
	}
	getFails := 0
	for range 4 {
		if _, err := inj.Get(ctx, "manifests/1"); err != nil {
			getFails++
		}
	}
	if _, err := inj.Get(ctx, "manifests/sub/1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("path.Match pattern * matched across a slash: %v", err)
	}
	if getFails != 2 || inj.Hits() != 3 || inj.Calls(storefault.Get) != 5 || inj.Calls(storefault.Any) != 10 {
		t.Errorf("getFails %d hits %d calls %d/%d", getFails, inj.Hits(), inj.Calls(storefault.Get), inj.Calls(storefault.Any))
	}
	err := storefault.Error{Op: storefault.Get, Key: "k", Store: "mem://", Fault: storefault.Fail}
	if !strings.Contains(err.Error(), `"k"`) || !strings.Contains(err.Error(), "mem://") {
		t.Errorf("error %q does not name key and store", err.Error())
	}
}

// TestProbReproducible: the same seed and calls give the same faults.
func TestProbReproducible(t *testing.T) {
	pattern := func(seed uint64) string {
		inj := newInj(t, seed, storefault.Rule{Prob: 0.5})
		var b strings.Builder
		for range 64 {
			if _, err := inj.Stat(context.Background(), "k"); storefault.IsInjected(err) {
				b.WriteByte('x')
			} else {
				b.WriteByte('.')
			}
		}
		return b.String()
	}
	a, b, c := pattern(3), pattern(3), pattern(4)
	if a != b || a == c || !strings.Contains(a, "x") || !strings.Contains(a, ".") {
		t.Errorf("seed 3: %s\nseed 3: %s\nseed 4: %s", a, b, c)
	}
}

func TestWriteFaults(t *testing.T) {
	ctx := context.Background()
	data := []byte("0123456789")
	for _, tc := range []struct {
		fault   storefault.Fault
		wantErr bool
		stored  string // "" = nothing
	}{
		{storefault.Fail, true, ""},
		{storefault.DropWrite, true, ""},
		{storefault.TornWrite, true, "01234"},
		{storefault.TruncateSilently, false, "01234"},
		{storefault.LostAck, true, "0123456789"},
	} {
		for _, op := range []storefault.Op{storefault.Put, storefault.PutIfAbsent} {
			inj := newInj(t, 1, storefault.Rule{Op: op, Nth: 1, Fault: tc.fault})
			put := inj.Put
			if op == storefault.PutIfAbsent {
				put = inj.PutIfAbsent
			}
			err := put(ctx, "k", data)
			if (err != nil) != tc.wantErr || err != nil && !store.IsTransient(err) {
				t.Errorf("%s %v: err = %v, want error %v (transient)", op, tc.fault, err, tc.wantErr)
			}
			got, gerr := inj.Get(ctx, "k")
			switch {
			case tc.stored == "" && !errors.Is(gerr, store.ErrNotFound):
				t.Errorf("%s %v: stored %q, want nothing", op, tc.fault, got)
			case tc.stored != "" && string(got) != tc.stored:
				t.Errorf("%s %v: stored %q (%v), want %q", op, tc.fault, got, gerr, tc.stored)
			}
		}
	}
	// A torn PutIfAbsent on a taken key does not tear the existing object.
	inj := newInj(t, 1, storefault.Rule{Op: storefault.PutIfAbsent, Nth: 2, Fault: storefault.TornWrite})
	_ = inj.PutIfAbsent(ctx, "k", []byte("first"))
	if err := inj.PutIfAbsent(ctx, "k", data); !errors.Is(err, store.ErrExists) {
		t.Errorf("torn PutIfAbsent on a taken key = %v, want ErrExists", err)
	}
}

func TestReadAndDeleteFaults(t *testing.T) {
	ctx := context.Background()
	inj := newInj(t, 1,
		storefault.Rule{Op: storefault.Get, Nth: 1, Fault: storefault.TruncateRead},
		storefault.Rule{Op: storefault.Delete, Nth: 1, Fault: storefault.LostAck},
		storefault.Rule{Op: storefault.List, Nth: 1, Fault: storefault.DropWrite},
	)
	if err := inj.Put(ctx, "k", []byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	if got, err := inj.Get(ctx, "k"); err != nil || string(got) != "01234" {
		t.Errorf("TruncateRead Get = %q, %v", got, err)
	}
	if err := inj.List(ctx, "", func(store.ObjectInfo) error { return nil }); !storefault.IsInjected(err) {
		t.Errorf("List = %v, want injected", err)
	}
	if err := inj.Delete(ctx, "k"); !storefault.IsInjected(err) {
		t.Errorf("LostAck Delete = %v, want injected", err)
	}
	if _, err := inj.Get(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LostAck Delete did not delete: %v", err)
	}
}

func TestStall(t *testing.T) {
	ctx := context.Background()
	inj := newInj(t, 1, storefault.Rule{Op: storefault.Put, Count: 3, Fault: storefault.Stall})
	done := make(chan error, 2)
	for _, k := range []string{"a", "b"} {
		go func() { done <- inj.Put(ctx, k, []byte(k)) }()
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := inj.WaitStalled(wctx, 2); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("a stalled Put returned before Release: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	if _, err := inj.Get(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a stalled Put reached the store: %v", err)
	}
	inj.Release()
	for range 2 {
		if err := <-done; err != nil {
			t.Errorf("Put after Release = %v", err)
		}
	}
	if got, err := inj.Get(ctx, "b"); err != nil || string(got) != "b" {
		t.Errorf("after Release: %q, %v", got, err)
	}
	// A stall ends with its context, and the store never sees the call.
	cctx, ccancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer ccancel()
	if err := inj.Put(cctx, "c", []byte("c")); !errors.Is(err, context.DeadlineExceeded) || store.IsTransient(err) {
		t.Errorf("stalled Put with a deadline = %v", err)
	}
	if _, err := inj.Get(ctx, "c"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a Put whose stall timed out reached the store: %v", err)
	}
}
