package gitstate

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/gitstate/gittest"
)

// BenchmarkIncrementalCapture measures a capture after a one-line edit in a
// repository of 10,000 files of 15 KB (about 150 MB), the acceptance
// case, next to the reference platform's method (`git bundle create --all`
// of the same repository). Metrics: bundle-B (bytes uploaded per capture),
// ref-bundle-B and ref-ns (the reference method), and x-faster / x-smaller.
func BenchmarkIncrementalCapture(b *testing.B) {
	repo := newRepo(b)
	gittest.ManyFiles(b, repo, 10000, 15000)
	e := newEnv(b)
	ctx := context.Background()
	first, err := Capture(ctx, repo, nil, CaptureOptions{ObjectDir: e.objects, ScratchDir: e.scratch})
	if err != nil {
		b.Fatal(err)
	}
	prev := first.State

	ref := filepath.Join(b.TempDir(), "all.bundle")
	start := time.Now()
	git(b, repo, "bundle", "create", "-q", ref, "--all")
	refTime := time.Since(start)
	refSize := fileSize(ref)

	p := filepath.Join(repo, "pkg07/sub03/file01157.go")
	var bytes int64
	var took time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
		fmt.Fprintf(f, "// edit %d\n", i)
		f.Close()
		start := time.Now()
		res, err := Capture(ctx, repo, &prev, CaptureOptions{ObjectDir: e.objects, ScratchDir: e.scratch, MaxChain: 1 << 30})
		took += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		bytes += fileSize(res.Bundle)
		os.Remove(res.Bundle)
		prev = res.State
	}
	b.StopTimer()
	per := float64(bytes) / float64(b.N)
	perTime := float64(took.Nanoseconds()) / float64(b.N)
	b.ReportMetric(per, "bundle-B")
	b.ReportMetric(float64(refSize), "ref-bundle-B")
	b.ReportMetric(float64(refTime.Nanoseconds()), "ref-ns")
	b.ReportMetric(float64(refTime.Nanoseconds())/perTime, "x-faster")
	b.ReportMetric(float64(refSize)/per, "x-smaller")
}
