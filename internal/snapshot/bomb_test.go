package snapshot

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/semaphore"

	"github.com/tether-dev/tether/internal/store"
)

// bombSize is what a decompression bomb inflates to.
const bombSize = 1 << 30

var (
	bombOnce sync.Once
	bombs    [2][]byte
)

// zstdBomb returns an object (header byte and zstd stream) of bombSize zero
// bytes, 32 KiB stored. With declared, its frame header states
// its size, as EncodeAll writes it; without, it is a stream of unknown size,
// which a decoder can only find out about by inflating it.
func zstdBomb(t testing.TB, declared bool) []byte {
	t.Helper()
	bombOnce.Do(func() {
		zero := make([]byte, 1<<20)
		for i, size := range []int64{-1, bombSize} {
			var buf bytes.Buffer
			buf.WriteByte(encZstd)
			enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedBetterCompression))
			if err != nil {
				panic(err)
			}
			enc.ResetContentSize(&buf, size)
			for n := 0; n < bombSize; n += len(zero) {
				if _, err := enc.Write(zero); err != nil {
					panic(err)
				}
			}
			if err := enc.Close(); err != nil {
				panic(err)
			}
			bombs[i] = buf.Bytes()
		}
	})
	if declared {
		return bombs[1]
	}
	return bombs[0]
}

// bombResult is what the restore child reports.
type bombResult struct {
	Restore    string   `json:"restore"`
	CorruptKey string   `json:"corruptKey"`
	Verify     []string `json:"verify"`
	// PeakRSS is the child's VmHWM, its own peak resident set.
	PeakRSS int64 `json:"peakRSS"`
}

// childRestore restores the latest snapshot of session default/s1 of
// CHILD_STORE into CHILD_TARGET, then verifies the session, and reports.
func childRestore() int {
	ctx := context.Background()
	st, err := store.Open(ctx, os.Getenv("CHILD_STORE"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer st.Close()
	repo, err := OpenRepo(st, "default", "s1")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var res bombResult
	fetches, _ := strconv.Atoi(os.Getenv("CHILD_FETCHES"))
	_, err = Restore(ctx, repo, os.Getenv("CHILD_TARGET"), RestoreOptions{Fetches: fetches})
	if err != nil {
		res.Restore = err.Error()
	}
	var ce *CorruptError
	if errors.As(err, &ce) {
		res.CorruptKey = ce.Key
	}
	rep, err := Verify(ctx, repo, VerifyOptions{Fetches: 8})
	if err != nil {
		res.Verify = []string{err.Error()}
	} else {
		res.Verify = rep.Problems
	}
	res.PeakRSS = procStatus(os.Getpid(), "VmHWM:")
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}

// procStatus returns a size field (VmRSS:, VmHWM:) of /proc/<pid>/status
// in bytes, 0 once the process is gone.
func procStatus(pid int, field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// restoreInChild runs childRestore in a child process and returns its report
// and its peak RSS: the VmHWM it reports, and never less than its ru_maxrss
// when that is the child's own (os/exec starts the child with vfork, and
// Linux carries the parent's high-water mark into the child's ru_maxrss at
// exec, so ru_maxrss is only an upper bound: the larger of the two
// processes' peaks). The child is killed as soon as its RSS passes 1 GiB,
// or after 3 minutes, so that a regression fails fast instead of taking
// the machine down.
func restoreInChild(t *testing.T, url string, fetches int) (res bombResult, peak int64) {
	t.Helper()
	const killAt = 1 << 30
	exe, err := os.Executable()
	must(t, err)
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=restore", "CHILD_STORE="+url, "CHILD_TARGET="+filepath.Join(t.TempDir(), "out"), "CHILD_FETCHES="+strconv.Itoa(fetches))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	must(t, cmd.Start())
	var killedAt atomic.Int64
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		deadline := time.After(3 * time.Minute)
		for {
			select {
			case <-done:
				return
			case <-deadline:
				killedAt.Store(-1)
				cmd.Process.Kill()
				return
			case <-tick.C:
			}
			if rss := procStatus(cmd.Process.Pid, "VmRSS:"); rss > killAt {
				killedAt.Store(rss)
				cmd.Process.Kill()
				return
			}
		}
	}()
	werr := cmd.Wait()
	close(done)
	maxrss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10
	peak = maxrss
	switch k := killedAt.Load(); {
	case k < 0:
		t.Fatalf("restore child still running after 3 minutes (peak RSS %d MiB); stderr:\n%s", peak>>20, stderr.String())
	case k > 0:
		t.Fatalf("restore child killed at %d MiB of RSS (peak %d MiB), over the 1 GiB safeguard: a decompression bomb is being inflated; stderr tail:\n%s", k>>20, peak>>20, tail(stderr.String(), 2000))
	}
	if werr != nil {
		t.Fatalf("restore child: %v (peak RSS %d MiB); stderr:\n%s", werr, peak>>20, stderr.String())
	}
	must(t, json.Unmarshal(stdout.Bytes(), &res))
	if res.PeakRSS <= 0 || res.PeakRSS > maxrss {
		t.Fatalf("restore child reported a peak RSS of %d bytes, its ru_maxrss is %d", res.PeakRSS, maxrss)
	}
	t.Logf("restore child: VmHWM %d MiB, ru_maxrss %d MiB (this test process's peak: %d MiB)", res.PeakRSS>>20, maxrss>>20, procStatus(os.Getpid(), "VmHWM:")>>20)
	return res, res.PeakRSS
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// TestDecompressionBombRestore: a chunk that 8 files of a snapshot share,
// replaced in the store by a few KiB of zstd that inflate to 1 GiB, is
// refused by restore and verify with an error naming the object, and the
// restoring process's peak RSS stays under 256 MiB. The same for a chunk of
// a git bundle, which restore streams into git.
func TestDecompressionBombRestore(t *testing.T) {
	const maxPeak = 256 << 20
	bomb := zstdBomb(t, false)
	t.Logf("bomb: %d bytes stored, %d inflated", len(bomb), bombSize)
	eachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		repo, ws, app := repoWorkspace(t, url)
		writeFile(t, filepath.Join(app, "main.go"), []byte("package main\n"), 0o644)
		// Incompressible, so that the bundle's first chunk is larger than
		// the bomb and is decompressed, not refused for its stored size.
		writeFile(t, filepath.Join(app, "blob.bin"), randBytes(newRand(4), 1<<20), 0o644)
		git(t, app, "add", "-A")
		git(t, app, "commit", "-qm", "first")
		shared := randBytes(newRand(3), 200<<10)
		for i := range 8 {
			writeFile(t, filepath.Join(ws, fmt.Sprintf("copy%d.bin", i)), shared, 0o644)
		}
		save(t, repo, ws, SaveOptions{})
		m, err := repo.LoadManifest(ctx, FormatID(1))
		must(t, err)
		fileKey := repo.objectKey(hashID(shared))
		var users int
		for _, e := range m.Entries {
			if len(e.Chunks) == 1 && repo.objectKey(e.Chunks[0].ID) == fileKey {
				users++
			}
		}
		if users != 8 || len(m.Repos) != 1 {
			t.Fatalf("want 8 files sharing chunk %s and one repository, got %d files and %d repositories", fileKey, users, len(m.Repos))
		}
		bundleChunk := m.Repos[0].Bundles[0].Chunks[0]
		if bundleChunk.Len <= int64(len(bomb)) {
			t.Fatalf("bundle chunk of %d bytes, want more than the bomb's %d", bundleChunk.Len, len(bomb))
		}
		bundleKey := repo.objectKey(bundleChunk.ID)

		for _, tc := range []struct{ name, key string }{{"files", fileKey}, {"bundle", bundleKey}} {
			t.Run(tc.name, func(t *testing.T) {
				good, err := repo.st.Get(ctx, tc.key)
				must(t, err)
				must(t, repo.st.Put(ctx, tc.key, bomb))
				defer func() { must(t, repo.st.Put(ctx, tc.key, good)) }()

				res, peak := restoreInChild(t, url, 8)
				t.Logf("restore with a bomb in the %s chunk: peak RSS %d MiB; %s", tc.name, peak>>20, res.Restore)
				if res.CorruptKey != tc.key || !strings.Contains(res.Restore, tc.key) {
					t.Errorf("restore: %q, want a CorruptError naming %s", res.Restore, tc.key)
				}
				if len(res.Verify) != 1 || !strings.Contains(res.Verify[0], tc.key) {
					t.Errorf("verify problems: %q, want one naming %s", res.Verify, tc.key)
				}
				if peak >= maxPeak {
					t.Errorf("peak RSS of the restoring process: %d MiB, want under %d MiB", peak>>20, maxPeak>>20)
				}
			})
		}
	})
}

// heldStore counts the bytes of the objects its Gets have returned and
// still hold (each Get holds its object for a while before returning it, so
// that every fetch allowed to run at once does).
type heldStore struct {
	store.Store
	hold      time.Duration
	cur, peak atomic.Int64
}

func (s *heldStore) Get(ctx context.Context, key string) ([]byte, error) {
	data, err := s.Store.Get(ctx, key)
	if err != nil || !strings.Contains(key, "/objects/") {
		return data, err
	}
	n := s.cur.Add(int64(len(data)))
	for p := s.peak.Load(); n > p && !s.peak.CompareAndSwap(p, n); p = s.peak.Load() {
	}
	time.Sleep(s.hold)
	s.cur.Add(-int64(len(data)))
	return data, nil
}

// TestFetchesHoldAtMostTheBudget: however many fetches a restore runs at
// once, for files and for a bundle, the chunks they hold add up to at most
// the fetch budget (here set to the largest chunk, 4 MiB, for a restore
// of 12 MiB of files and a 12 MiB bundle with 64 fetches).
func TestFetchesHoldAtMostTheBudget(t *testing.T) {
	ctx := context.Background()
	url := "file://" + t.TempDir()
	repo, ws, app := repoWorkspace(t, url)
	rng := newRand(11)
	writeFile(t, filepath.Join(app, "blob.bin"), randBytes(rng, 12<<20), 0o644)
	git(t, app, "add", "-A")
	git(t, app, "commit", "-qm", "first")
	for i := range 64 {
		writeFile(t, filepath.Join(ws, "files", fmt.Sprintf("f%02d.bin", i)), randBytes(rng, 192<<10), 0o644)
	}
	save(t, repo, ws, SaveOptions{})

	const budget = maxChunk
	held := &heldStore{Store: repo.st, hold: 50 * time.Millisecond}
	r, err := OpenRepo(held, repo.Namespace, repo.Session)
	must(t, err)
	r.budget = semaphore.NewWeighted(budget)
	out := filepath.Join(t.TempDir(), "out")
	_, err = Restore(ctx, r, out, RestoreOptions{Fetches: 64})
	must(t, err)
	assertSameTree(t, filepath.Join(ws, "files"), filepath.Join(out, "files"))
	// Each object is its content and a header byte.
	t.Logf("peak of chunk bytes held by fetches: %d KiB (budget %d KiB)", held.peak.Load()>>10, budget>>10)
	if p := held.peak.Load(); p > budget+64 {
		t.Fatalf("fetches held %d KiB of chunks at once, more than the budget of %d KiB", p>>10, budget>>10)
	}
}
