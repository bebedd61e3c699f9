package gitstate

import (
	"os"
	"path/filepath"
	"testing"
)

// ordinaryChanges makes a repository with history and every kind of change.
func ordinaryChanges(t *testing.T, repo string) {
	write(t, repo, "a.txt", "a\n")
	write(t, repo, "b.txt", "b\n")
	write(t, repo, "gone.txt", "gone\n")
	write(t, repo, "staged-gone.txt", "staged gone\n")
	write(t, repo, "old-name.txt", "rename me\nline 2\nline 3\n")
	write(t, repo, "tool.sh", "#!/bin/sh\necho hi\n")
	write(t, repo, ".gitignore", "*.log\nbuild/\n")
	if err := os.WriteFile(filepath.Join(repo, "bin.dat"), []byte{0, 1, 2, 3, 255, 0, 10, 13}, 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, repo, "add", "-A")
	git(t, repo, "commit", "-q", "-m", "first")
	write(t, repo, "a.txt", "a\nmore\n")
	git(t, repo, "commit", "-q", "-am", "second")
	git(t, repo, "branch", "feature")
	git(t, repo, "tag", "v1")
	git(t, repo, "tag", "-a", "-m", "annotated", "v1a")

	write(t, repo, "a.txt", "a\nmore\nstaged\n")
	git(t, repo, "add", "a.txt")
	write(t, repo, "a.txt", "a\nmore\nstaged\nunstaged\n")
	write(t, repo, "b.txt", "b unstaged\n")
	os.Remove(filepath.Join(repo, "gone.txt"))
	git(t, repo, "rm", "-q", "staged-gone.txt")
	git(t, repo, "mv", "old-name.txt", "new-name.txt")
	write(t, repo, "untracked/deep/file.txt", "untracked\n")
	write(t, repo, "odd names/spaced ü \"q\".txt", "unicode\n")
	write(t, repo, "odd names/tab\there\nnewline", "control characters\n")
	write(t, repo, "-leading-dash", "dash\n")
	write(t, repo, "debug.log", "ignored\n")
	write(t, repo, ".git/info/exclude", "local-only/\n")
	write(t, repo, "local-only/x", "excluded by .git/info/exclude\n")
	write(t, repo, "build/out.o", "ignored\n")
	if err := os.WriteFile(filepath.Join(repo, "bin.dat"), []byte{0, 1, 2, 3, 254, 0, 10, 13, 0}, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(repo, "tool.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a.txt", filepath.Join(repo, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../nowhere", filepath.Join(repo, "untracked/dangling")); err != nil {
		t.Fatal(err)
	}
}

func TestOrdinaryRepo(t *testing.T) {
	repo := newRepo(t)
	ordinaryChanges(t, repo)
	e := newEnv(t)
	res := e.capture(repo)
	if !res.Full || res.Bundle == "" {
		t.Fatalf("first capture: full %v bundle %q, want a full bundle", res.Full, res.Bundle)
	}
	compareRepos(t, repo, e.restore())
	for _, f := range []string{"debug.log", "build/out.o"} {
		if _, err := os.Stat(filepath.Join(e.restore(), f)); !os.IsNotExist(err) {
			t.Errorf("ignored file %s was restored (%v)", f, err)
		}
	}
}
