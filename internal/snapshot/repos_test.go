package snapshot

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com",
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// gitView is what a person sees of a repository: status, diffs, index, history.
func gitView(t *testing.T, dir string) string {
	return strings.Join([]string{
		git(t, dir, "status", "--porcelain=v2", "--branch", "--untracked-files=all"),
		git(t, dir, "diff"),
		git(t, dir, "diff", "--cached", "--binary"),
		git(t, dir, "ls-files", "-s"),
		git(t, dir, "log", "--all", "--format=%H %P %s"),
		git(t, dir, "branch", "-vv"),
	}, "\n--\n")
}

// TestRepoInWorkspace: a repository under repos/ with committed, staged,
// unstaged, untracked, deleted and binary changes round-trips through save
// and restore, and the second save after a one-line edit stores a small
// incremental bundle.
func TestRepoInWorkspace(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("the git CLI is required")
	}
	eachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		repo, ws, app := repoWorkspace(t, url)
		writeFile(t, filepath.Join(app, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644)
		writeFile(t, filepath.Join(app, "gone.txt"), []byte("to be deleted\n"), 0o644)
		writeFile(t, filepath.Join(app, ".gitignore"), []byte("*.log\n"), 0o644)
		git(t, app, "add", "-A")
		git(t, app, "commit", "-qm", "first")
		writeFile(t, filepath.Join(app, "main.go"), []byte("package main\n\nfunc main() { println(1) }\n"), 0o644)
		writeFile(t, filepath.Join(app, "staged.txt"), []byte("staged\n"), 0o644)
		git(t, app, "add", "staged.txt")
		writeFile(t, filepath.Join(app, "untracked.bin"), randBytes(newRand(5), 200<<10), 0o755)
		writeFile(t, filepath.Join(app, "debug.log"), []byte("ignored\n"), 0o644)
		must(t, os.Remove(filepath.Join(app, "gone.txt")))
		writeFile(t, filepath.Join(ws, "notes.txt"), []byte("outside the repo\n"), 0o644)

		saver, err := NewSaver(repo, ws, SaveOptions{CacheDir: t.TempDir()})
		must(t, err)
		defer saver.Close()
		first, err := saver.Save(ctx)
		must(t, err)
		if first.Repos != 1 || first.ReposCaptured != 1 {
			t.Fatalf("first save: %+v", first)
		}
		writeFile(t, filepath.Join(app, "main.go"), []byte("package main\n\nfunc main() { println(2) }\n"), 0o644)
		second, err := saver.Save(ctx)
		must(t, err)
		t.Logf("one-line edit: %d bytes uploaded in %d objects (manifest included)", second.BytesUploaded, second.ObjectsUploaded)
		if second.ReposCaptured != 1 || second.BytesUploaded > 64<<10 {
			t.Fatalf("second save after a one-line edit: %+v", second)
		}
		third, err := saver.Save(ctx)
		must(t, err)
		if third.ReposCaptured != 0 {
			t.Fatalf("save without change stored a new bundle: %+v", third)
		}

		out := filepath.Join(t.TempDir(), "out")
		_, err = Restore(ctx, repo, out, RestoreOptions{})
		must(t, err)
		rapp := filepath.Join(out, "repos", "app")
		if want, got := gitView(t, app), gitView(t, rapp); want != got {
			t.Fatalf("restored repository differs:\nwant:\n%s\ngot:\n%s", want, got)
		}
		for _, f := range []string{"main.go", "staged.txt", "untracked.bin"} {
			a, _ := os.ReadFile(filepath.Join(app, f))
			b, err := os.ReadFile(filepath.Join(rapp, f))
			if err != nil || string(a) != string(b) {
				t.Fatalf("%s differs after restore (%v)", f, err)
			}
		}
		if _, err := os.Stat(filepath.Join(rapp, "debug.log")); !os.IsNotExist(err) {
			t.Fatalf("ignored file came back: %v", err)
		}
		if b, _ := os.ReadFile(filepath.Join(out, "notes.txt")); string(b) != "outside the repo\n" {
			t.Fatal("file outside the repo not restored")
		}
		if _, err := os.Stat(filepath.Join(out, stagingName)); !os.IsNotExist(err) {
			t.Fatal("restore's staging and bundle scratch dir left in the restored workspace")
		}
		rep, err := Verify(ctx, repo, VerifyOptions{})
		must(t, err)
		if len(rep.Problems) > 0 {
			t.Fatal(rep.Problems)
		}
	})
}
