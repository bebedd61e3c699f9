package snapshot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRestoreBadBundleChunk: a bundle chunk that is corrupt or missing in
// the middle of a bundle, while git is already reading it, fails the restore
// with an error naming the object, and leaves nothing in the target.
func TestRestoreBadBundleChunk(t *testing.T) {
	eachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		repo, ws, app := repoWorkspace(t, url)
		// Incompressible, so that the bundle is several chunks.
		writeFile(t, filepath.Join(app, "blob.bin"), randBytes(newRand(7), 3<<20), 0o644)
		writeFile(t, filepath.Join(app, "main.go"), []byte("package main\n"), 0o644)
		git(t, app, "add", "-A")
		git(t, app, "commit", "-qm", "first")
		writeFile(t, filepath.Join(ws, "notes.txt"), []byte("outside the repo\n"), 0o644)
		save(t, repo, ws, SaveOptions{})

		m, err := repo.LoadManifest(ctx, FormatID(1))
		must(t, err)
		if len(m.Repos) != 1 || len(m.Repos[0].Bundles) != 1 || len(m.Repos[0].Bundles[0].Chunks) < 3 {
			t.Fatalf("want one repository with a bundle of at least 3 chunks, got %+v", m.Repos)
		}
		chunks := m.Repos[0].Bundles[0].Chunks
		bad := repo.objectKey(chunks[len(chunks)/2].ID)
		good, err := repo.st.Get(ctx, bad)
		must(t, err)
		must(t, repo.st.Put(ctx, bad, encode([]byte("not what the name says"))))

		out := filepath.Join(t.TempDir(), "out")
		_, err = Restore(ctx, repo, out, RestoreOptions{Fetches: 2})
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.Key != bad || !strings.Contains(err.Error(), bad) {
			t.Fatalf("restore with a corrupt bundle chunk: %v, want a CorruptError naming %s", err, bad)
		}
		assertEmpty(t, out)

		must(t, repo.st.Delete(ctx, bad))
		_, err = Restore(ctx, repo, out, RestoreOptions{Fetches: 2})
		var me *MissingError
		if !errors.As(err, &me) || me.Key != bad {
			t.Fatalf("restore with a missing bundle chunk: %v, want a MissingError naming %s", err, bad)
		}
		assertEmpty(t, out)

		// Repaired, the same target restores exactly.
		must(t, repo.st.Put(ctx, bad, good))
		_, err = Restore(ctx, repo, out, RestoreOptions{Fetches: 2})
		must(t, err)
		if want, got := gitView(t, app), gitView(t, filepath.Join(out, "repos", "app")); want != got {
			t.Fatalf("restored repository differs:\nwant:\n%s\ngot:\n%s", want, got)
		}
		b, err := os.ReadFile(filepath.Join(out, "notes.txt"))
		if err != nil || string(b) != "outside the repo\n" {
			t.Fatalf("notes.txt after restore: %q, %v", b, err)
		}
	})
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	names, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if len(names) != 0 {
		t.Fatalf("a failed restore left %v in %s", names, dir)
	}
}
