package gitstate

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/gitstate/gittest"
)

func TestLargeRepo10kFiles(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("large repository test skipped in -short mode")
	}
	repo := filepath.Join(t.TempDir(), "repo")
	gittest.TenKFiles(t, repo)
	e := newEnv(t)
	e.capture(repo)
	full := e.took
	fullSize := fileSize(e.bundles[0])

	// One-line edit of a tracked file.
	gittest.OneLineEdit(t, repo)
	res := e.capture(repo)
	incr := e.took
	if res.Full || res.Bundle == "" {
		t.Fatal("second capture is not incremental")
	}
	incSize := fileSize(e.bundles[len(e.bundles)-1])
	if incSize >= 2048 {
		t.Errorf("incremental bundle after a one-line edit is %d bytes, want < 2 KiB", incSize)
	}
	// Nothing changed: no bundle.
	if res := e.capture(repo); res.Bundle != "" {
		t.Error("unchanged repo produced a bundle")
	}
	none := e.took
	start := time.Now()
	dir := e.restore()
	restoreTime := time.Since(start)
	compareRepos(t, repo, dir)

	// The reference platform's method, for scale.
	start = time.Now()
	ref := filepath.Join(t.TempDir(), "all.bundle")
	git(t, repo, "bundle", "create", "-q", ref, "--all")
	refTime := time.Since(start)
	t.Logf("10k files: full capture %v (%d B), restore of the chain of 2 %v, incremental after one-line edit %v (%d B), unchanged %v; git bundle create --all %v (%d B)",
		full.Round(time.Millisecond), fullSize, restoreTime.Round(time.Millisecond), incr.Round(time.Millisecond), incSize,
		none.Round(time.Millisecond), refTime.Round(time.Millisecond), fileSize(ref))
}

func TestBigBinaryOneByteChange(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("50 MiB test skipped in -short mode")
	}
	repo := filepath.Join(t.TempDir(), "repo")
	gittest.BigBinary(t, repo)
	e := newEnv(t)
	e.capture(repo)
	gittest.FlipByte(t, repo)
	res := e.capture(repo)
	took := e.took
	size := fileSize(e.bundles[len(e.bundles)-1])
	t.Logf("50 MiB binary, one byte changed: incremental capture %v, bundle %d bytes (full bundle %d bytes)", took.Round(time.Millisecond), size, fileSize(e.bundles[0]))
	if res.Full {
		t.Fatal("capture after a one-byte change is full")
	}
	if size > 1<<20 {
		t.Errorf("incremental bundle is %d bytes: the changed blob was not delta-compressed against the previous one", size)
	}
	compareRepos(t, repo, e.restore())
}

// TestGCAndRebaseBetweenCaptures rewrites the user's history and prunes the
// old commits (which the earlier snapshots reference) between captures.
func TestGCAndRebaseBetweenCaptures(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	gittest.ThreeCommits(t, repo)
	e := newEnv(t)
	e.capture(repo)

	// Amend commit 2 and rebase commit 3 onto it, then forget and prune the
	// old commits.
	gittest.RewriteAndPrune(t, repo)
	old := e.states[0].Head.Commit
	if _, err := gitErr(repo, nil, "cat-file", "-e", old); err == nil {
		t.Fatal("the old HEAD survived gc; the test would prove nothing")
	}
	res := e.capture(repo)
	if res.Full {
		t.Fatal("capture after a rebase and gc was full; the previous snapshot is still in the private object directory")
	}
	compareRepos(t, repo, e.restore())

	gittest.GCAfterEdit(t, repo)
	e.capture(repo)
	compareRepos(t, repo, e.restore())

	// Each prefix of the chain restores its own state.
	for i := range e.states {
		dir := filepath.Join(t.TempDir(), "r")
		if err := Restore(context.Background(), dir, e.states[i], e.bundles[:i+1]); err != nil {
			t.Fatalf("restore of capture %d from its chain: %v", i+1, err)
		}
		if got := strings.TrimSpace(git(t, dir, "rev-parse", "HEAD")); got != e.states[i].Head.Commit {
			t.Errorf("capture %d restored HEAD %s, want %s", i+1, got, e.states[i].Head.Commit)
		}
	}
}

// TestCaptureOfRestoredRepo continues the chain from a restored repository
// with an empty private object directory (a new pod): the previous snapshot
// commit is found in the restored repository, so the bundle is incremental.
func TestCaptureOfRestoredRepo(t *testing.T) {
	repo := newRepo(t)
	gittest.OrdinaryChanges(t, repo)
	e := newEnv(t)
	e.capture(repo)
	dir := e.restore()
	write(t, dir, "b.txt", "changed after restore\n")
	e.objects = filepath.Join(t.TempDir(), "fresh-objects")
	res := e.capture(dir)
	if res.Full {
		t.Fatal("capture of the restored repository is full")
	}
	compareRepos(t, dir, e.restore())
}
