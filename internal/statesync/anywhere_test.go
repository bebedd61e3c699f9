package statesync

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/gitstate/gittest"
	"github.com/tether-dev/tether/internal/snapshot"
	"github.com/tether-dev/tether/internal/store/storetest"
)

// TestSyncRepoAnywhereChanges: a file event in a repository outside repos/
// (and in one nested inside another) makes the next save capture it again,
// not only the --repo-interval timer: with the interval at an hour, each
// edit is in a snapshot within seconds.
func TestSyncRepoAnywhereChanges(t *testing.T) {
	ws := t.TempDir()
	for _, r := range []string{"src/app", "proj", "repos/a"} {
		gittest.Ordinary(t, filepath.Join(ws, r))
	}
	gittest.Ordinary(t, filepath.Join(ws, "repos/a/vendor/b"))
	gittest.Git(t, filepath.Join(ws, "repos/a/vendor/b"), "commit", "-q", "-m", "b")
	repo := openRepo(t, storetest.FileURL(t.TempDir()), "anywhere")
	cfg := testConfig(ws)
	cfg.RepoInterval = time.Hour
	cfg.Rescan = time.Hour
	s, err := New(cfg, repo, quietLog(t))
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); must(t, <-done) }()
	snap := func(m *snapshot.Manifest, rel string) string {
		for _, r := range m.Repos {
			if r.Path == rel {
				return r.State.Snapshot
			}
		}
		return ""
	}
	var first *snapshot.Manifest
	waitFor(t, repo, 20*time.Second, "all four repositories", func(m *snapshot.Manifest) bool {
		first = m
		return snap(m, "src/app") != "" && snap(m, "proj") != "" && snap(m, "repos/a") != "" && snap(m, "repos/a/vendor/b") != "" && len(m.ReposAsFiles) == 0
	})
	for _, rel := range []string{"src/app", "proj", "repos/a/vendor/b"} {
		before := snap(first, rel)
		must(t, os.WriteFile(filepath.Join(ws, rel, "a.txt"), []byte("edited in "+rel+"\n"), 0o644))
		waitFor(t, repo, 10*time.Second, rel+" captured again", func(m *snapshot.Manifest) bool {
			return snap(m, rel) != "" && snap(m, rel) != before
		})
	}
}
