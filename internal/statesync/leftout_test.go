package statesync

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tether-dev/tether/internal/gitstate/gittest"
	"github.com/tether-dev/tether/internal/snapshot"
	"github.com/tether-dev/tether/internal/store/storetest"
)

// TestSyncLeftOutIsSuccess: a workspace holding a FIFO and a repository git
// cannot capture is saved by the sync (the rest of it, the repository file by
// file), the log line and /metrics say what was left out, and the sync does
// not treat it as a failure to retry.
func TestSyncLeftOutIsSuccess(t *testing.T) {
	ws := t.TempDir()
	must(t, os.WriteFile(filepath.Join(ws, "kept.txt"), []byte("kept"), 0o644))
	must(t, unix.Mkfifo(filepath.Join(ws, "pipe\xff"), 0o644))
	must(t, os.MkdirAll(filepath.Join(ws, "repos", "dangling"), 0o755))
	must(t, os.WriteFile(filepath.Join(ws, "repos", "dangling", ".git"), []byte("gitdir: /nonexistent/tether/.git\n"), 0o644))
	repo := openRepo(t, storetest.FileURL(t.TempDir()), "leftout")
	var logs syncBuffer
	s, err := New(testConfig(ws), repo, slog.New(slog.NewTextHandler(&logs, nil)))
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, repo, 5*time.Second, "kept.txt", func(m *snapshot.Manifest) bool {
		return hasFile(m, "kept.txt", 4) && hasFile(m, "repos/dangling/.git", -1) && m.Summary.LeftOut == 1
	})
	// A few loop rounds: a left-out entry must not make the sync retry.
	must(t, os.WriteFile(filepath.Join(ws, "kept.txt"), []byte("kept2"), 0o644))
	waitFor(t, repo, 5*time.Second, "kept.txt changed", func(m *snapshot.Manifest) bool { return hasFile(m, "kept.txt", 5) })
	cancel()
	must(t, <-done)
	out := logs.String()
	if !strings.Contains(out, `pipe\\xff`) || !strings.Contains(out, "a named pipe (FIFO)") || !strings.Contains(out, "repos/dangling") {
		t.Fatalf("log does not name what was left out:\n%s", out)
	}
	if strings.Contains(out, "save failed") || strings.Contains(out, "level=ERROR") {
		t.Fatalf("a save with left-out entries was logged as a failure:\n%s", out)
	}
	rec := httptest.NewRecorder()
	s.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{"tether_sync_left_out_files 1\n", "tether_sync_repos_saved_as_files 1\n", "tether_sync_consecutive_failures 0\n"} {
		if !strings.Contains(body, want) {
			t.Fatalf("metrics lack %q:\n%s", want, body)
		}
	}
}

// TestHydrateByteNames: two names that differ only in bytes that are not
// UTF-8 hydrate byte for byte, on every store backend.
func TestHydrateByteNames(t *testing.T) {
	for _, b := range storetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			ws := t.TempDir()
			must(t, os.WriteFile(filepath.Join(ws, "notes\xff.txt"), []byte("ff"), 0o644))
			must(t, os.WriteFile(filepath.Join(ws, "notes\xfe.txt"), []byte("fe"), 0o644))
			gittest.Ordinary(t, filepath.Join(ws, "repos", "app"))
			repo := openRepo(t, b.URL, "bytes")
			saver, err := snapshot.NewSaver(repo, ws, snapshot.SaveOptions{})
			must(t, err)
			defer saver.Close()
			_, err = saver.Save(ctx)
			must(t, err)
			out := t.TempDir()
			res, err := Hydrate(ctx, repo, out, nil, nil)
			must(t, err)
			if res.Outcome != OutcomeRestored {
				t.Fatalf("hydrate: %+v", res)
			}
			if len(res.Repos) != 1 || res.Repos[0].Path != "repos/app" || res.Repos[0].Mode != snapshot.RepoModeGit {
				t.Fatalf("hydrate's repositories: %+v", res.Repos)
			}
			for name, want := range map[string]string{"notes\xff.txt": "ff", "notes\xfe.txt": "fe"} {
				if got, err := os.ReadFile(filepath.Join(out, name)); err != nil || string(got) != want {
					t.Fatalf("%q: %q, %v", name, got, err)
				}
			}
		})
	}
}
