package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tether-dev/tether/internal/gitstate/gittest"
)

// TestSnapshotCLIGitMergeInProgress carries a repository in the middle of a
// conflicted merge through `tether snapshot save` and `snapshot restore`
// (each a fresh command, as separate processes would be): the restored copy
// is indistinguishable from the original, concludes the merge like the
// original, and the next save (after the merge is committed) restores too.
// The other git edge cases and backends are covered through the package API
// in internal/snapshot (TestGitCasesRoundTrip).
func TestSnapshotCLIGitMergeInProgress(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("the git CLI is required")
		}
		t.Skip("the git CLI is not on PATH")
	}
	common := []string{"--store", "file://" + t.TempDir(), "--session", "s1"}
	cache := t.TempDir()
	ws := t.TempDir()
	app := filepath.Join(ws, "repos", "app")
	gittest.MergeConflict(t, app)

	saveCLI := func() map[string]any {
		t.Helper()
		code, out, errs := tether(t, append([]string{"snapshot", "save", "--workspace", ws, "--cache-dir", cache, "--json"}, common...)...)
		if code != 0 {
			t.Fatalf("save: exit %d: %s", code, errs)
		}
		var st map[string]any
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("save --json printed %q: %v", out, err)
		}
		if st["repos"] != float64(1) || st["reposCaptured"] != float64(1) {
			t.Fatalf("save did not capture the repository: %s", out)
		}
		return st
	}
	restoreCLI := func(id string) string {
		t.Helper()
		dst := filepath.Join(t.TempDir(), "restored")
		if code, _, errs := tether(t, append([]string{"snapshot", "restore", "--workspace", dst, "--snapshot", id}, common...)...); code != 0 {
			t.Fatalf("restore of snapshot %s: exit %d: %s", id, code, errs)
		}
		return filepath.Join(dst, "repos", "app")
	}

	saveCLI()
	first := restoreCLI("1")
	gittest.CompareRepos(t, app, first)
	if _, err := os.Stat(filepath.Join(first, ".git", "MERGE_HEAD")); err != nil {
		t.Fatalf("the restored repository is not merging: %v", err)
	}

	for _, d := range []string{app, first} {
		gittest.ConcludeMerge(t, d)
	}
	gittest.CompareRepos(t, app, first)

	st := saveCLI()
	if n := st["bytesUploaded"].(float64); n > 64<<10 {
		t.Errorf("second save after a merge commit uploaded %v bytes; the bundle should be incremental", n)
	}
	gittest.CompareRepos(t, app, restoreCLI("2"))
}
