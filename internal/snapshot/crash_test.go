package snapshot

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/store"
	"github.com/tether-dev/tether/internal/store/storetest"
)

// The crash test runs saves in a child process (this test binary, re-executed)
// and kills it with SIGKILL at random moments.
const childEnv = "TETHER_SNAPSHOT_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "save" {
		os.Exit(childSave())
	}
	if os.Getenv(childEnv) == "restore" {
		os.Exit(childRestore()) // bomb_test.go
	}
	storetest.Main(m)
}

func childSave() int {
	ctx := context.Background()
	st, err := store.Open(ctx, os.Getenv("CHILD_STORE"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	repo, err := OpenRepo(st, "default", "crash")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	s, err := NewSaver(repo, os.Getenv("CHILD_WORKSPACE"), SaveOptions{CacheDir: os.Getenv("CHILD_CACHE")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	stats, err := s.Save(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(stats)
	return 0
}

// mutate changes the workspace the way an agent does: appends to the
// transcript, rewrites a file, adds one, deletes one.
func mutate(t *testing.T, rng *rand.Rand, ws string, i int) {
	tr := filepath.Join(ws, "t.jsonl")
	f, err := os.OpenFile(tr, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
	must(t, err)
	_, err = f.Write(jsonl(rng, 1+rng.Intn(64<<10)))
	must(t, err)
	must(t, f.Close())
	writeFile(t, filepath.Join(ws, "src", fmt.Sprintf("f%d.txt", rng.Intn(8))), randBytes(rng, rng.Intn(600<<10)), 0o644)
	writeFile(t, filepath.Join(ws, "new", fmt.Sprintf("n%d.bin", i)), randBytes(rng, rng.Intn(1<<20)), 0o644)
	if i > 2 {
		os.Remove(filepath.Join(ws, "new", fmt.Sprintf("n%d.bin", i-2)))
	}
}

func TestCrashDuringSave(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes 50 times per backend")
	}
	exe, err := os.Executable()
	must(t, err)
	eachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		rng := rand.New(rand.NewSource(time.Now().UnixNano()))
		ws := t.TempDir()
		cache := t.TempDir()
		st, err := store.Open(ctx, url)
		must(t, err)
		defer st.Close()
		repo, err := OpenRepo(st, "default", "crash")
		must(t, err)

		prev := "" // digest of the newest complete snapshot's tree
		avg := 200 * time.Millisecond
		var killed, completed int
		for i := 0; i < 50; i++ {
			mutate(t, rng, ws, i)
			next := treeDigest(t, ws)

			cmd := exec.Command(exe, "-test.run=^$")
			cmd.Env = append(os.Environ(), childEnv+"=save", "CHILD_STORE="+url, "CHILD_WORKSPACE="+ws, "CHILD_CACHE="+cache)
			cmd.Stderr = os.Stderr
			must(t, cmd.Start())
			// The first save runs to completion to calibrate; later ones are
			// killed at a uniform moment within 1.5x the typical duration,
			// which grows after every kill so slow machines still see saves
			// complete.
			delay := time.Duration(rng.Int63n(int64(avg) * 3 / 2))
			if i == 0 {
				delay = time.Minute
			}
			done := make(chan error, 1)
			startedAt := time.Now()
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("iteration %d: save failed: %v", i, err)
				}
				completed++
				avg = (avg*3 + time.Since(startedAt)) / 4
			case <-time.After(delay):
				_ = cmd.Process.Signal(syscall.SIGKILL)
				if err := <-done; err == nil {
					completed++
				} else {
					killed++
					avg = avg * 9 / 8
				}
			}

			// The newest snapshot is the previous state or the new one, never a mixture.
			ids, err := repo.SnapshotIDs(ctx)
			must(t, err)
			if len(ids) == 0 {
				if prev != "" {
					t.Fatalf("iteration %d: snapshots vanished", i)
				}
				continue
			}
			out := filepath.Join(t.TempDir(), "out")
			_, err = Restore(ctx, repo, out, RestoreOptions{})
			if err != nil {
				t.Fatalf("iteration %d: restore after kill: %v", i, err)
			}
			got := treeDigest(t, out)
			if got != next && got != prev {
				t.Fatalf("iteration %d: restored tree is neither the previous nor the new workspace", i)
			}
			prev = got
			os.RemoveAll(out)
		}
		rep, err := Verify(ctx, repo, VerifyOptions{})
		must(t, err)
		if len(rep.Problems) > 0 {
			t.Fatalf("verify after %d kills: %q", killed, rep.Problems)
		}
		t.Logf("%d saves killed mid-way, %d completed; %d snapshots verified", killed, completed, len(rep.Snapshots))
		if killed < 10 || completed < 5 {
			t.Fatalf("%d of 50 saves were killed mid-way and %d completed: the test did not exercise both", killed, completed)
		}
	})
}
