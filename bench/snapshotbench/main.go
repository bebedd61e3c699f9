// Command snapshotbench measures snapshot save and restore throughput on a
// generated 1 GiB workspace and the cost of an incremental save after a 1 KiB
// append, against a plain file copy measured in the same run, and prints a table.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/tether-dev/tether/internal/snapshot"
	"github.com/tether-dev/tether/internal/statesync"
	"github.com/tether-dev/tether/internal/store"
)

func main() {
	size := flag.Int64("size", 1<<30, "workspace size in bytes")
	runs := flag.Int("runs", 3, "runs per figure (median reported)")
	dir := flag.String("dir", "", "scratch directory (default: a temp dir)")
	storeURL := flag.String("store", "", "store URL (default: a file:// store in the scratch dir)")
	flag.Parse()
	if err := run(*size, *runs, *dir, *storeURL); err != nil {
		fmt.Fprintln(os.Stderr, "snapshotbench:", err)
		os.Exit(1)
	}
}

func run(size int64, runs int, dir, storeURL string) error {
	ctx := context.Background()
	if dir == "" {
		d, err := os.MkdirTemp("", "snapshotbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	ws := filepath.Join(dir, "ws")
	fmt.Printf("generating a %d MiB workspace in %s\n", size>>20, ws)
	if err := generate(ws, size); err != nil {
		return err
	}

	var saveT, restoreT, copyT, restoreCopyT, appendT []time.Duration
	var appendBytes, appendRead int64
	var finalT []time.Duration
	for r := 0; r < runs; r++ {
		url := storeURL
		if url == "" {
			sd := filepath.Join(dir, fmt.Sprintf("store-%d", r))
			if err := os.MkdirAll(sd, 0o755); err != nil {
				return err
			}
			url = "file://" + sd
		}
		st, err := store.Open(ctx, url)
		if err != nil {
			return err
		}
		repo, err := snapshot.OpenRepo(st, "bench", fmt.Sprintf("run-%d-%d", r, time.Now().UnixNano()))
		if err != nil {
			return err
		}
		// Baseline: a plain copy of the workspace, the least any backup must do.
		dst := filepath.Join(dir, "copy")
		t0 := time.Now()
		if err := copyTree(ws, dst); err != nil {
			return err
		}
		copyT = append(copyT, time.Since(t0))
		dst2 := filepath.Join(dir, "copy2")
		t0 = time.Now()
		if err := copyTree(dst, dst2); err != nil {
			return err
		}
		restoreCopyT = append(restoreCopyT, time.Since(t0))
		os.RemoveAll(dst)
		os.RemoveAll(dst2)

		saver, err := snapshot.NewSaver(repo, ws, snapshot.SaveOptions{})
		if err != nil {
			return err
		}
		t0 = time.Now()
		if _, err := saver.Save(ctx); err != nil {
			return err
		}
		saveT = append(saveT, time.Since(t0))

		out := filepath.Join(dir, "restored")
		t0 = time.Now()
		if _, err := snapshot.Restore(ctx, repo, out, snapshot.RestoreOptions{}); err != nil {
			return err
		}
		restoreT = append(restoreT, time.Since(t0))
		os.RemoveAll(out)

		f, err := os.OpenFile(filepath.Join(ws, "transcripts", "t00.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		f.Write(jsonl(rand.New(rand.NewSource(int64(r))), 1024))
		f.Close()
		t0 = time.Now()
		as, err := saver.Save(ctx)
		if err != nil {
			return err
		}
		appendT = append(appendT, time.Since(t0))
		appendBytes, appendRead = as.BytesUploaded, as.BytesRead

		// The sync loop's final snapshot after SIGTERM, with 1 KiB pending.
		d, err := finalSnapshot(repo, ws, dir, r)
		if err != nil {
			return err
		}
		finalT = append(finalT, d)
		st.Close()
		if storeURL == "" {
			os.RemoveAll(filepath.Join(dir, fmt.Sprintf("store-%d", r)))
		}
	}
	mib := float64(size) / (1 << 20)
	thr := func(d time.Duration) float64 { return mib / d.Seconds() }
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Printf("\nmachine: %s/%s, %d CPUs; medians of %d runs; store %s\n\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runs, or(storeURL, "file:// (local directory)"))
	fmt.Fprintln(tw, "figure\ttether\tbaseline (plain copy)\ttether/baseline\t")
	fmt.Fprintf(tw, "save throughput (MiB/s)\t%.0f\t%.0f\t%.2f\t\n", thr(median(saveT)), thr(median(copyT)), thr(median(saveT))/thr(median(copyT)))
	fmt.Fprintf(tw, "restore throughput (MiB/s)\t%.0f\t%.0f\t%.2f\t\n", thr(median(restoreT)), thr(median(restoreCopyT)), thr(median(restoreT))/thr(median(restoreCopyT)))
	tw.Flush()
	tr, _ := os.Stat(filepath.Join(ws, "transcripts", "t00.jsonl"))
	fmt.Printf("\nincremental save after a 1 KiB append to a %d MiB transcript: %s, %d bytes uploaded (manifest included), %d bytes read\n",
		tr.Size()>>20, median(appendT).Round(time.Millisecond), appendBytes, appendRead)
	fmt.Printf("final snapshot of tether sync after SIGTERM with 1 KiB pending on the %d MiB workspace: %s (default --final-budget %s)\n",
		size>>20, median(finalT).Round(time.Millisecond), statesync.Defaults().FinalBudget)
	fmt.Printf("a whole-file copy of that transcript would upload %d bytes: tether/baseline = %.5f\n", tr.Size(), float64(appendBytes)/float64(tr.Size()))
	return nil
}

// finalSnapshot starts the sync loop on ws (after one save, as in a running
// pod), appends 1 KiB, stops it at once and returns how long the stop took.
func finalSnapshot(repo *snapshot.Repo, ws, dir string, r int) (time.Duration, error) {
	cfg := statesync.Defaults()
	cfg.Workspace = ws
	cfg.CacheDir = filepath.Join(dir, fmt.Sprintf("cache-%d", r))
	cfg.Debounce, cfg.MaxDelay = time.Hour, time.Hour // only the final snapshot may catch the change
	s, err := statesync.New(cfg, repo, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return 0, err
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	// Wait for the loop's first save (a full scan that fills its cache).
	for s.Saves() == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	f, err := os.OpenFile(filepath.Join(ws, "transcripts", "t01.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	f.Write(jsonl(rand.New(rand.NewSource(int64(r+100))), 1024))
	f.Close()
	t0 := time.Now()
	cancel()
	if err := <-done; err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// generate writes 40% transcripts (JSONL), 60% artifacts (random binary).
func generate(ws string, size int64) error {
	rng := rand.New(rand.NewSource(1))
	if err := os.MkdirAll(filepath.Join(ws, "transcripts"), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(ws, "artifacts"), 0o755); err != nil {
		return err
	}
	tsize := size * 4 / 10 / 20
	for i := 0; i < 20; i++ {
		if err := os.WriteFile(filepath.Join(ws, "transcripts", fmt.Sprintf("t%02d.jsonl", i)), jsonl(rng, int(tsize)), 0o600); err != nil {
			return err
		}
	}
	left := size - 20*tsize
	for i := 0; left > 0; i++ {
		n := min(left, int64(1<<10+rng.Intn(40<<20)))
		b := make([]byte, n)
		rng.Read(b)
		if err := os.WriteFile(filepath.Join(ws, "artifacts", fmt.Sprintf("a%03d.bin", i)), b, 0o644); err != nil {
			return err
		}
		left -= n
	}
	old := time.Now().Add(-time.Hour)
	return filepath.WalkDir(ws, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chtimes(p, old, old)
	})
}

func jsonl(rng *rand.Rand, n int) []byte {
	b := make([]byte, 0, n+256)
	for i := 0; len(b) < n; i++ {
		b = fmt.Appendf(b, `{"type":"assistant","seq":%d,"message":{"content":[{"type":"text","text":"step %d: %x"}]}}`+"\n", i, rng.Int63(), rng.Int63())
	}
	return b[:n]
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(target)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		if err := out.Sync(); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
