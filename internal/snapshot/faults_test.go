package snapshot

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/store"
	"github.com/tether-dev/tether/internal/store/storefault"
)

// TestTransientFaults: with about 10% of store calls failing transiently
// (plus lost answers and dropped uploads), save, restore and verify succeed
// through the retry wrapper, and the restored tree is exact.
func TestTransientFaults(t *testing.T) {
	eachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		base, err := store.Open(ctx, url)
		must(t, err)
		defer base.Close()
		inj := storefault.New(base, 42)
		inj.Add(
			storefault.Rule{Prob: 0.03, Fault: storefault.LostAck},
			storefault.Rule{Prob: 0.03, Fault: storefault.DropWrite},
			storefault.Rule{Prob: 0.10, Fault: storefault.Fail},
		)
		st := store.WithRetry(inj, store.RetryOptions{InitialDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond, MaxAttempts: 12, Seed: 1})
		repo, err := OpenRepo(st, "default", "faults")
		must(t, err)

		ws := filepath.Join(t.TempDir(), "ws")
		makeWorkspace(t, ws)
		saver, err := NewSaver(repo, ws, SaveOptions{})
		must(t, err)
		for i := 0; i < 3; i++ {
			writeFile(t, filepath.Join(ws, "changing.bin"), randBytes(newRand(int64(i)), 700<<10), 0o644)
			if _, err := saver.Save(ctx); err != nil {
				t.Fatalf("save %d under faults: %v", i, err)
			}
		}
		out := filepath.Join(t.TempDir(), "out")
		if _, err := Restore(ctx, repo, out, RestoreOptions{}); err != nil {
			t.Fatalf("restore under faults: %v", err)
		}
		assertSameTree(t, ws, out)
		rep, err := Verify(ctx, repo, VerifyOptions{})
		must(t, err)
		if len(rep.Problems) > 0 {
			t.Fatal(rep.Problems)
		}
		if inj.Hits() < 10 {
			t.Fatalf("only %d faults were injected in %d calls", inj.Hits(), inj.Calls(storefault.Any))
		}
		t.Logf("%d faults injected in %d store calls", inj.Hits(), inj.Calls(storefault.Any))
	})
}

// TestTornUploadIsReplaced: a store that kept half of a failed upload under
// the chunk's name does not end up in a snapshot: the retry finds the name
// taken, sees the content is wrong, and replaces it.
func TestTornUploadIsReplaced(t *testing.T) {
	ctx := context.Background()
	base, err := store.Open(ctx, "file://"+t.TempDir())
	must(t, err)
	inj := storefault.New(base, 1)
	inj.Add(storefault.Rule{Op: storefault.PutIfAbsent, KeyPrefix: "default/torn/objects/", Nth: 1, Fault: storefault.TornWrite})
	repo, err := OpenRepo(store.WithRetry(inj, store.RetryOptions{InitialDelay: time.Millisecond}), "default", "torn")
	must(t, err)
	ws := t.TempDir()
	writeFile(t, filepath.Join(ws, "f.bin"), randBytes(newRand(9), 100<<10), 0o644)
	save(t, repo, ws, SaveOptions{})
	rep, err := Verify(ctx, repo, VerifyOptions{})
	must(t, err)
	if len(rep.Problems) > 0 || inj.Hits() != 1 {
		t.Fatalf("problems %q after %d torn writes", rep.Problems, inj.Hits())
	}
}
