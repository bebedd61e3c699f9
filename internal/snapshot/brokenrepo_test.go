package snapshot

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tether-dev/tether/internal/gitstate/gittest"
)

// TestBrokenRepoCases: one workspace per way a repository breaks. In each
// the save succeeds, the ordinary file beside the repository is saved, the
// repository comes back (as git state when git can still read it safely,
// else file by file with .git byte for byte) and both SaveStats and
// RestoreStats say which.
func TestBrokenRepoCases(t *testing.T) {
	cases := []struct {
		name string
		make func(t *testing.T, dir string)
		mode string // RepoModeGit or RepoModeFiles
		// reason is part of what the save must say for a repository saved as files.
		reason string
		check  func(t *testing.T, orig, restored string)
	}{
		{"corrupt loose object", func(t *testing.T, dir string) {
			gittest.Ordinary(t, dir)
			corruptLooseObject(t, dir)
		}, RepoModeFiles, "inflate", nil},
		{"corrupt pack", func(t *testing.T, dir string) {
			gittest.Ordinary(t, dir)
			corruptPack(t, dir)
		}, RepoModeFiles, "inflate", nil},
		{"dangling .git file", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, ".git"), []byte("gitdir: /nonexistent/tether-test/.git\n"), 0o644)
			writeFile(t, filepath.Join(dir, "work.txt"), []byte("uncommitted work\n"), 0o644)
		}, RepoModeFiles, "not a git repository", nil},
		{"missing HEAD", func(t *testing.T, dir string) {
			gittest.Ordinary(t, dir)
			must(t, os.Remove(filepath.Join(dir, ".git", "HEAD")))
		}, RepoModeFiles, "has no HEAD", nil},
		// A git killed while writing the index leaves index.lock beside an
		// intact index (git renames the lock over the index only once it is
		// complete): the capture reads the index, not the lock, so it stays
		// git state. The lock is not restored: it would make every git
		// command after the restore fail with "index.lock exists".
		{"index.lock left behind", func(t *testing.T, dir string) {
			gittest.Ordinary(t, dir)
			gittest.Write(t, dir, "staged.txt", "staged\n")
			gittest.Git(t, dir, "add", "staged.txt")
			writeFile(t, filepath.Join(dir, ".git", "index.lock"), []byte("DIRC half written"), 0o644)
		}, RepoModeGit, "", func(t *testing.T, orig, restored string) {
			if _, err := os.Lstat(filepath.Join(restored, ".git", "index.lock")); err == nil {
				t.Errorf("index.lock restored: git would refuse to run")
			}
			must(t, os.Remove(filepath.Join(orig, ".git", "index.lock")))
			gittest.CompareRepos(t, orig, restored)
			gittest.Git(t, restored, "add", "-A")
		}},
		// A shallow clone whose .git/shallow is gone: its oldest commit
		// names a parent the repository does not have.
		{"shallow clone missing its parent", func(t *testing.T, dir string) {
			gittest.ShallowClone(t, dir)
			must(t, os.Remove(filepath.Join(dir, ".git", "shallow")))
		}, RepoModeFiles, "Could not read", nil},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			ctx := context.Background()
			repo := openRepo(t, "file://"+t.TempDir())
			ws := t.TempDir()
			rel := "src/broken"
			dir := filepath.Join(ws, filepath.FromSlash(rel))
			must(t, os.MkdirAll(filepath.Dir(dir), 0o755))
			tc.make(t, dir)
			writeFile(t, filepath.Join(ws, "notes.txt"), []byte("n\n"), 0o644)
			backdate(t, ws)
			st := save(t, repo, ws, SaveOptions{})
			var asFiles []string
			for _, r := range st.ReposAsFiles {
				asFiles = append(asFiles, r.Path)
				if !strings.Contains(r.Reason, tc.reason) {
					t.Errorf("%s saved as files for %q, want a reason with %q", r.Path, r.Reason, tc.reason)
				}
			}
			switch tc.mode {
			case RepoModeFiles:
				if len(asFiles) != 1 || asFiles[0] != rel || st.Repos != 0 {
					t.Fatalf("saved as files %v and %d as git state, want %s as files", asFiles, st.Repos, rel)
				}
			case RepoModeGit:
				if len(asFiles) != 0 || st.Repos != 1 {
					t.Fatalf("saved as files %+v and %d as git state, want %s as git state", st.ReposAsFiles, st.Repos, rel)
				}
			}
			out := filepath.Join(t.TempDir(), "out")
			rs, err := Restore(ctx, repo, out, RestoreOptions{})
			must(t, err)
			if len(rs.Repos) != 1 || rs.Repos[0].Path != rel || rs.Repos[0].Mode != tc.mode {
				t.Fatalf("restore reports %+v, want %s in mode %s", rs.Repos, rel, tc.mode)
			}
			if got, err := os.ReadFile(filepath.Join(out, "notes.txt")); err != nil || string(got) != "n\n" {
				t.Fatalf("notes.txt beside the repository: %q, %v", got, err)
			}
			restored := filepath.Join(out, filepath.FromSlash(rel))
			if tc.mode == RepoModeFiles {
				assertSameTree(t, dir, restored)
			}
			if tc.check != nil {
				tc.check(t, dir, restored)
			}
		})
	}
}

// corruptPack packs the repository's objects and flips a byte in the middle
// of the pack, inside compressed object data.
func corruptPack(t *testing.T, dir string) {
	t.Helper()
	gittest.Git(t, dir, "repack", "-a", "-d", "-q")
	gittest.Git(t, dir, "prune-packed")
	packs, err := filepath.Glob(filepath.Join(dir, ".git", "objects", "pack", "*.pack"))
	must(t, err)
	if len(packs) != 1 {
		t.Fatalf("%d packs, want 1", len(packs))
	}
	b, err := os.ReadFile(packs[0])
	must(t, err)
	for i := len(b) / 3; i < len(b)-20; i++ {
		b[i] ^= 0xff
	}
	must(t, os.Chmod(packs[0], 0o644))
	must(t, os.WriteFile(packs[0], b, 0o444))
	if out, err := exec.Command("git", "-C", dir, "fsck").CombinedOutput(); err == nil {
		t.Fatalf("git fsck accepts the corrupted pack: %s", out)
	}
}
