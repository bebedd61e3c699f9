package gittest

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Builders of repository states. Each one that takes dir creates the
// repository there (dir need not exist); the others change an existing repo.
// Commits have fixed dates (see Env), so building twice gives the same ids.

// OrdinaryChanges makes repo (which exists) a repository with history,
// branches, tags and every kind of change: staged and unstaged edits,
// deletions (staged and not), a rename, untracked files in new directories,
// odd file names, a binary edit, an exec bit, symlinks (one dangling) and
// ignored files (by .gitignore and .git/info/exclude).
func OrdinaryChanges(t testing.TB, repo string) {
	t.Helper()
	Write(t, repo, "a.txt", "a\n")
	Write(t, repo, "b.txt", "b\n")
	Write(t, repo, "gone.txt", "gone\n")
	Write(t, repo, "staged-gone.txt", "staged gone\n")
	Write(t, repo, "old-name.txt", "rename me\nline 2\nline 3\n")
	Write(t, repo, "tool.sh", "#!/bin/sh\necho hi\n")
	Write(t, repo, ".gitignore", "*.log\nbuild/\n")
	if err := os.WriteFile(filepath.Join(repo, "bin.dat"), []byte{0, 1, 2, 3, 255, 0, 10, 13}, 0o644); err != nil {
		t.Fatal(err)
	}
	Git(t, repo, "add", "-A")
	Git(t, repo, "commit", "-q", "-m", "first")
	Write(t, repo, "a.txt", "a\nmore\n")
	Git(t, repo, "commit", "-q", "-am", "second")
	Git(t, repo, "branch", "feature")
	Git(t, repo, "tag", "v1")
	Git(t, repo, "tag", "-a", "-m", "annotated", "v1a")

	Write(t, repo, "a.txt", "a\nmore\nstaged\n")
	Git(t, repo, "add", "a.txt")
	Write(t, repo, "a.txt", "a\nmore\nstaged\nunstaged\n")
	Write(t, repo, "b.txt", "b unstaged\n")
	os.Remove(filepath.Join(repo, "gone.txt"))
	Git(t, repo, "rm", "-q", "staged-gone.txt")
	Git(t, repo, "mv", "old-name.txt", "new-name.txt")
	Write(t, repo, "untracked/deep/file.txt", "untracked\n")
	Write(t, repo, "odd names/spaced ü \"q\".txt", "unicode\n")
	Write(t, repo, "odd names/tab\there\nnewline", "control characters\n")
	Write(t, repo, "-leading-dash", "dash\n")
	Write(t, repo, "debug.log", "ignored\n")
	Write(t, repo, ".git/info/exclude", "local-only/\n")
	Write(t, repo, "local-only/x", "excluded by .git/info/exclude\n")
	Write(t, repo, "build/out.o", "ignored\n")
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

// Ordinary creates a repository at dir with OrdinaryChanges.
func Ordinary(t testing.TB, dir string) {
	t.Helper()
	Init(t, dir)
	OrdinaryChanges(t, dir)
}

// Unborn creates a repository at dir with no commit: staged files, a staged
// file changed again, an untracked file. UnbornCommit is its next step.
func Unborn(t testing.TB, dir string) {
	t.Helper()
	Init(t, dir)
	Write(t, dir, "staged.txt", "staged\n")
	Write(t, dir, "dir/staged2.txt", "staged 2\n")
	Git(t, dir, "add", ".")
	Write(t, dir, "staged.txt", "staged then changed\n")
	Write(t, dir, "untracked.txt", "untracked\n")
}

// UnbornCommit makes the first commit of an Unborn repository.
func UnbornCommit(t testing.TB, repo string) {
	t.Helper()
	Git(t, repo, "commit", "-q", "-m", "first")
}

// OnlyUntracked creates a repository at dir that holds nothing but
// untracked files.
func OnlyUntracked(t testing.TB, dir string) {
	t.Helper()
	Init(t, dir)
	Write(t, dir, "notes.md", "# notes\n")
	Write(t, dir, "src/main.go", "package main\n")
}

// DetachedHead creates a repository at dir whose HEAD is detached at the
// first of two commits, with an unstaged change.
func DetachedHead(t testing.TB, dir string) {
	t.Helper()
	Init(t, dir)
	Write(t, dir, "f", "1\n")
	Git(t, dir, "add", "f")
	Git(t, dir, "commit", "-q", "-m", "one")
	Write(t, dir, "f", "2\n")
	Git(t, dir, "commit", "-q", "-am", "two")
	Git(t, dir, "checkout", "-q", "--detach", "HEAD~1")
	Write(t, dir, "f", "detached work\n")
}

// DeletedButStagedModified creates a repository at dir whose file f is
// staged as modified and deleted in the working tree (status "MD f").
func DeletedButStagedModified(t testing.TB, dir string) {
	t.Helper()
	Init(t, dir)
	Write(t, dir, "f", "1\n")
	Git(t, dir, "add", "f")
	Git(t, dir, "commit", "-q", "-m", "one")
	Write(t, dir, "f", "2\n")
	Git(t, dir, "add", "f")
	os.Remove(filepath.Join(dir, "f"))
}

// MergeConflict creates a repository at dir in the middle of a merge of
// branch other into main with conflicts of every kind (content, non-ASCII
// name, modify/delete, add/add) and an untracked file.
func MergeConflict(t testing.TB, dir string) {
	t.Helper()
	Init(t, dir)
	Write(t, dir, "f", "base\n")
	Write(t, dir, "g", "base g\n")
	Write(t, dir, "sp ace ü.txt", "base\n")
	Write(t, dir, "deleted-here", "base\n")
	Git(t, dir, "add", ".")
	Git(t, dir, "commit", "-q", "-m", "base")
	Git(t, dir, "checkout", "-q", "-b", "other")
	Write(t, dir, "f", "other\n")
	Write(t, dir, "g", "other g\n")
	Write(t, dir, "sp ace ü.txt", "other\n")
	Write(t, dir, "deleted-here", "changed on other\n")
	Write(t, dir, "added-both", "other\n")
	Git(t, dir, "add", ".")
	Git(t, dir, "commit", "-q", "-am", "other")
	Git(t, dir, "checkout", "-q", "main")
	Write(t, dir, "f", "main\n")
	Write(t, dir, "sp ace ü.txt", "main\n")
	Write(t, dir, "added-both", "main\n")
	Git(t, dir, "rm", "-q", "deleted-here")
	Git(t, dir, "add", ".")
	Git(t, dir, "commit", "-q", "-am", "main")
	if _, err := GitErr(dir, nil, "merge", "other"); err == nil {
		t.Fatal("merge did not conflict")
	}
	Write(t, dir, "untracked", "during merge\n")
}

// ConcludeMerge resolves and commits the merge of a MergeConflict repository.
func ConcludeMerge(t testing.TB, repo string) {
	t.Helper()
	Write(t, repo, "f", "resolved\n")
	Git(t, repo, "add", "-A")
	Git(t, repo, "commit", "-q", "--no-edit")
}

// RebaseConflict creates a repository at dir stopped on a conflict while
// rebasing three commits of branch topic onto main; backend is "--merge" or
// "--apply".
func RebaseConflict(t testing.TB, dir, backend string) {
	t.Helper()
	Init(t, dir)
	Write(t, dir, "f", "base\n")
	Git(t, dir, "add", ".")
	Git(t, dir, "commit", "-q", "-m", "base")
	Git(t, dir, "checkout", "-q", "-b", "topic")
	for i := 1; i <= 3; i++ {
		Write(t, dir, "f", fmt.Sprintf("topic %d\n", i))
		Write(t, dir, fmt.Sprintf("t%d", i), "x\n")
		Git(t, dir, "add", ".")
		Git(t, dir, "commit", "-q", "-m", fmt.Sprintf("topic %d", i))
	}
	Git(t, dir, "checkout", "-q", "main")
	Write(t, dir, "f", "main changed\n")
	Git(t, dir, "commit", "-q", "-am", "main changed")
	Git(t, dir, "checkout", "-q", "topic")
	if _, err := GitErr(dir, nil, "rebase", backend, "main"); err == nil {
		t.Fatal("rebase did not stop on a conflict")
	}
}

// ContinueRebase resolves every conflict of a RebaseConflict repository
// until the rebase is done; the topic commits then follow main.
func ContinueRebase(t testing.TB, repo string) {
	t.Helper()
	for i := 0; i < 5; i++ {
		Write(t, repo, "f", "resolved\n")
		Git(t, repo, "add", "f")
		if _, err := GitErr(repo, nil, "rebase", "--continue"); err == nil {
			break
		}
	}
	if got := Git(t, repo, "log", "--format=%s", "main..topic"); got != "topic 3\ntopic 2\ntopic 1\n" {
		t.Fatalf("rebase in %s ended with %q", repo, got)
	}
}

// CherryPickConflict creates a repository at dir stopped on a conflicting
// cherry-pick of a commit that no ref names any more (only CHERRY_PICK_HEAD).
func CherryPickConflict(t testing.TB, dir string) {
	t.Helper()
	Init(t, dir)
	Write(t, dir, "f", "base\n")
	Git(t, dir, "add", ".")
	Git(t, dir, "commit", "-q", "-m", "base")
	Git(t, dir, "checkout", "-q", "-b", "side")
	Write(t, dir, "f", "side\n")
	Git(t, dir, "commit", "-q", "-am", "side change")
	pick := strings.TrimSpace(Git(t, dir, "rev-parse", "HEAD"))
	Git(t, dir, "checkout", "-q", "main")
	Git(t, dir, "branch", "-q", "-D", "side")
	Write(t, dir, "f", "main\n")
	Git(t, dir, "commit", "-q", "-am", "main change")
	if _, err := GitErr(dir, nil, "cherry-pick", pick); err == nil {
		t.Fatal("cherry-pick did not conflict")
	}
}

// ContinueCherryPick resolves and concludes a CherryPickConflict.
func ContinueCherryPick(t testing.TB, repo string) {
	t.Helper()
	Write(t, repo, "f", "resolved\n")
	Git(t, repo, "add", "f")
	Git(t, repo, "cherry-pick", "--continue")
	if got := Git(t, repo, "log", "-1", "--format=%s"); got != "side change\n" {
		t.Fatalf("cherry-pick in %s concluded as %q", repo, got)
	}
}

// Bisect creates a repository at dir of eight commits with a bisect in
// progress (one step done).
func Bisect(t testing.TB, dir string) {
	t.Helper()
	Init(t, dir)
	for i := 0; i < 8; i++ {
		Write(t, dir, "f", fmt.Sprintf("%d\n", i))
		Git(t, dir, "add", ".")
		Git(t, dir, "commit", "-q", "-m", fmt.Sprintf("c%d", i))
	}
	Git(t, dir, "bisect", "start", "HEAD", "HEAD~7")
	Git(t, dir, "bisect", "good")
}

// BisectStep marks the current bisect commit bad.
func BisectStep(t testing.TB, repo string) {
	t.Helper()
	Git(t, repo, "bisect", "bad")
}

// SubmodulePath is where Submodule puts its submodule, relative to the repository.
const SubmodulePath = "vendor/lib"

// Submodule creates a repository at dir with a submodule at SubmodulePath
// (cloned from a repository in a temporary directory) and changes in both:
// the submodule has a modified and an untracked file, the parent a modified
// file.
func Submodule(t testing.TB, dir string) {
	t.Helper()
	lib := filepath.Join(t.TempDir(), "lib")
	Init(t, lib)
	Write(t, lib, "lib.go", "package lib\n")
	Git(t, lib, "add", ".")
	Git(t, lib, "commit", "-q", "-m", "lib")
	Init(t, dir)
	Write(t, dir, "main.go", "package main\n")
	Git(t, dir, "add", ".")
	Git(t, dir, "commit", "-q", "-m", "app")
	Git(t, dir, "submodule", "-q", "add", lib, SubmodulePath)
	Git(t, dir, "commit", "-q", "-m", "add lib")
	sub := filepath.Join(dir, SubmodulePath)
	Write(t, sub, "lib.go", "package lib // changed in the submodule\n")
	Write(t, sub, "new.go", "package lib\n")
	Write(t, dir, "main.go", "package main // changed\n")
}

// Secrets are the strings Credentials hides in remote URLs; none may reach
// a snapshot.
var Secrets = []string{"s3cr3t", "alice"}

// Credentials creates a repository at dir whose remotes have credentials in
// their URLs (user:token, a query token, a push URL, ssh password), with an
// upstream and a remote-tracking branch.
func Credentials(t testing.TB, dir string) {
	t.Helper()
	Init(t, dir)
	Write(t, dir, "f", "x\n")
	Git(t, dir, "add", ".")
	Git(t, dir, "commit", "-q", "-m", "one")
	Git(t, dir, "remote", "add", "origin", "https://alice:s3cr3t-token@git.example.com/team/repo.git?private_token=qs-s3cr3t")
	Git(t, dir, "remote", "set-url", "--push", "origin", "https://x-access-token:push-s3cr3t@git.example.com/team/repo.git")
	Git(t, dir, "remote", "add", "ssh", "ssh://git:ssh-s3cr3t@git.example.com/team/repo.git")
	Git(t, dir, "config", "branch.main.remote", "origin")
	Git(t, dir, "config", "branch.main.merge", "refs/heads/main")
	Git(t, dir, "update-ref", "refs/remotes/origin/main", "HEAD")
	Write(t, dir, "f", "y\n")
}

// CheckCredentialsRestored fails the test if a restored Credentials
// repository holds a secret (in its config or any object) or lost its
// sanitised remotes or upstream.
func CheckCredentialsRestored(t testing.TB, restored string) {
	t.Helper()
	cfg := Git(t, restored, "config", "--list", "--local")
	objs := Git(t, restored, "cat-file", "--batch-all-objects", "--batch", "--unordered")
	for _, secret := range Secrets {
		for name, text := range map[string]string{"restored config": cfg, "restored objects": objs} {
			if strings.Contains(text, secret) {
				t.Errorf("%s contains %q", name, secret)
			}
		}
	}
	if !strings.Contains(cfg, "remote.origin.url=https://git.example.com/team/repo.git") ||
		!strings.Contains(cfg, "remote.ssh.url=ssh://git@git.example.com/team/repo.git") {
		t.Errorf("restored remotes are not the sanitised URLs:\n%s", cfg)
	}
	if got := Git(t, restored, "rev-parse", "--abbrev-ref", "main@{upstream}"); got != "origin/main\n" {
		t.Errorf("restored upstream %q", got)
	}
}

// ShallowClone creates at dir a --depth=2 clone of a five-commit repository
// in a temporary directory, with a local change and an untracked file.
// ShallowCommit is its next step.
func ShallowClone(t testing.TB, dir string) {
	t.Helper()
	origin := NewRepo(t)
	for i := 0; i < 5; i++ {
		Write(t, origin, "f", fmt.Sprintf("%d\n", i))
		Git(t, origin, "add", ".")
		Git(t, origin, "commit", "-q", "-m", fmt.Sprintf("c%d", i))
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	Git(t, filepath.Dir(dir), "clone", "-q", "--depth=2", "file://"+origin, dir)
	Write(t, dir, "f", "local change\n")
	Write(t, dir, "new", "untracked\n")
}

// ShallowCommit commits the local change of a ShallowClone.
func ShallowCommit(t testing.TB, repo string) {
	t.Helper()
	Git(t, repo, "commit", "-q", "-am", "local")
}

// IntentToAdd creates a repository at dir with files added with
// `git add -N` (one in a new directory, one with a space) and an empty
// staged file.
func IntentToAdd(t testing.TB, dir string) {
	t.Helper()
	Init(t, dir)
	Write(t, dir, "f", "x\n")
	Git(t, dir, "add", "f")
	Git(t, dir, "commit", "-q", "-m", "one")
	Write(t, dir, "new file.txt", "intent\n")
	Write(t, dir, "dir/other", "intent 2\n")
	Write(t, dir, "empty-staged", "")
	Git(t, dir, "add", "empty-staged")
	Git(t, dir, "add", "-N", "new file.txt", "dir/other")
}

// LocalConfig creates a repository at dir with a local identity, pull and
// alias settings, secrets in config (an extra header, a credential helper,
// an insteadOf URL) and an active pre-commit hook that logs to
// .git/hook.log.
func LocalConfig(t testing.TB, dir string) {
	t.Helper()
	Init(t, dir)
	Git(t, dir, "config", "user.name", "Agent Smith")
	Git(t, dir, "config", "user.email", "agent@example.com")
	Git(t, dir, "config", "pull.rebase", "true")
	Git(t, dir, "config", "alias.st", "status -sb")
	Git(t, dir, "config", "core.autocrlf", "input")
	Git(t, dir, "config", "http.https://git.example.com/.extraheader", "AUTHORIZATION: bearer hdr-s3cr3t")
	Git(t, dir, "config", "credential.helper", "store --file /tmp/cred-s3cr3t")
	Git(t, dir, "config", "url.https://tok-s3cr3t@git.example.com/.insteadOf", "https://git.example.com/")
	Write(t, dir, "f", "x\n")
	Write(t, dir, ".git/hooks/pre-commit", "#!/bin/sh\necho hook ran >> \"$(git rev-parse --git-dir)/hook.log\"\n")
	if err := os.Chmod(filepath.Join(dir, ".git/hooks/pre-commit"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// SplitIndex creates a repository at dir with OrdinaryChanges and a split
// index (core.splitIndex) holding a staged change.
func SplitIndex(t testing.TB, dir string) {
	t.Helper()
	Init(t, dir)
	Git(t, dir, "config", "core.splitIndex", "true")
	OrdinaryChanges(t, dir)
	Git(t, dir, "update-index", "--split-index")
	Write(t, dir, "b.txt", "after split\n")
	Git(t, dir, "add", "b.txt")
}

// SHA256 creates a SHA-256 repository at dir with OrdinaryChanges.
func SHA256(t testing.TB, dir string) {
	t.Helper()
	Init(t, dir, "--object-format=sha256")
	OrdinaryChanges(t, dir)
}

// LinkedWorktree creates at dir a linked worktree (its .git is a file) of a
// repository in a temporary directory, with an unstaged change.
func LinkedWorktree(t testing.TB, dir string) {
	t.Helper()
	main := NewRepo(t)
	Write(t, main, "f", "x\n")
	Git(t, main, "add", ".")
	Git(t, main, "commit", "-q", "-m", "one")
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	Git(t, main, "worktree", "add", "-q", dir)
	Write(t, dir, "f", "in worktree\n")
}

// ManyFiles fills repo with n committed files of about size bytes each in
// nested directories, then runs git gc.
func ManyFiles(t testing.TB, repo string, n, size int) {
	t.Helper()
	// Random hex lines compress about as well as source code does not:
	// the reference bundle is not flattered by repetition.
	rng := rand.New(rand.NewSource(1))
	raw := make([]byte, 30)
	for i := 0; i < n; i++ {
		var b strings.Builder
		fmt.Fprintf(&b, "// file %d\n", i)
		for b.Len() < size {
			rng.Read(raw)
			fmt.Fprintf(&b, "%x\n", raw)
		}
		Write(t, repo, fmt.Sprintf("pkg%02d/sub%02d/file%05d.go", i%50, (i/50)%20, i), b.String())
	}
	Git(t, repo, "add", "-A")
	Git(t, repo, "commit", "-q", "-m", "many files")
	Git(t, repo, "gc", "-q")
}

// TenKFiles creates a repository at dir with 10,000 committed files of about
// 1 KB and an untracked file. OneLineEdit is its next step.
func TenKFiles(t testing.TB, dir string) {
	t.Helper()
	Init(t, dir)
	ManyFiles(t, dir, 10000, 1000)
	Write(t, dir, "untracked-notes.txt", "notes\n")
}

// OneLineEdit appends a line to one tracked file of a ManyFiles repository.
func OneLineEdit(t testing.TB, repo string) {
	t.Helper()
	p := filepath.Join(repo, "pkg07/sub03/file01157.go")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, append(b, []byte("// one more line\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// BigBinaryName is the file BigBinary commits.
const BigBinaryName = "model.bin"

// BigBinary creates a repository at dir with a committed 50 MiB file of
// random bytes. FlipByte is its next step.
func BigBinary(t testing.TB, dir string) {
	t.Helper()
	Init(t, dir)
	data := make([]byte, 50<<20)
	rand.New(rand.NewSource(2)).Read(data)
	if err := os.WriteFile(filepath.Join(dir, BigBinaryName), data, 0o644); err != nil {
		t.Fatal(err)
	}
	Git(t, dir, "add", ".")
	Git(t, dir, "commit", "-q", "-m", "big")
}

// FlipByte inverts the middle byte of the BigBinary file, in the working tree only.
func FlipByte(t testing.TB, repo string) {
	t.Helper()
	p := filepath.Join(repo, BigBinaryName)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[25<<20] ^= 0xff
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// ThreeCommits creates a repository at dir with three commits and an
// untracked file, the start of the gc-and-rebase case: RewriteAndPrune and
// GCAfterEdit are its next steps.
func ThreeCommits(t testing.TB, dir string) {
	t.Helper()
	Init(t, dir)
	for i := 1; i <= 3; i++ {
		Write(t, dir, fmt.Sprintf("c%d", i), fmt.Sprintf("%d\n", i))
		Write(t, dir, "f", fmt.Sprintf("version %d\n", i))
		Git(t, dir, "add", ".")
		Git(t, dir, "commit", "-q", "-m", fmt.Sprintf("commit %d", i))
	}
	Write(t, dir, "untracked", "u1\n")
}

// RewriteAndPrune amends commit 2 of a ThreeCommits repository, rebases
// commit 3 onto it, and prunes the old commits (which an earlier capture
// references) with reflog expire and an aggressive gc. It fails the test if
// the old HEAD survives (the case would prove nothing).
func RewriteAndPrune(t testing.TB, repo string) {
	t.Helper()
	old := strings.TrimSpace(Git(t, repo, "rev-parse", "HEAD"))
	Git(t, repo, "checkout", "-q", "--detach", "HEAD~1")
	Write(t, repo, "c2", "2 amended\n")
	Git(t, repo, "commit", "-q", "-a", "--amend", "-m", "commit 2 amended")
	amended := strings.TrimSpace(Git(t, repo, "rev-parse", "HEAD"))
	Git(t, repo, "checkout", "-q", "main")
	Git(t, repo, "rebase", "-q", "--onto", amended, "HEAD~1", "main")
	Git(t, repo, "reflog", "expire", "--expire=now", "--all")
	Git(t, repo, "gc", "-q", "--prune=now", "--aggressive")
	if _, err := GitErr(repo, nil, "cat-file", "-e", old); err == nil {
		t.Fatal("the old HEAD survived gc; the case would prove nothing")
	}
	Write(t, repo, "untracked", "u2\n")
}

// GCAfterEdit changes a file and runs git gc --prune=now.
func GCAfterEdit(t testing.TB, repo string) {
	t.Helper()
	Write(t, repo, "f", "after gc\n")
	Git(t, repo, "gc", "-q", "--prune=now")
}

// ChainSteps are the steps after OrdinaryChanges of the chain case: an
// untracked file; a commit of everything and a checkout of another branch;
// two stashes and a staged new file.
var ChainSteps = []func(t testing.TB, repo string){
	func(t testing.TB, repo string) { Write(t, repo, "untracked/new.txt", "new\n") },
	func(t testing.TB, repo string) {
		Git(t, repo, "add", "-A")
		Git(t, repo, "commit", "-q", "-m", "third")
		Git(t, repo, "checkout", "-q", "feature")
	},
	func(t testing.TB, repo string) {
		Write(t, repo, "a.txt", "on feature\n")
		Git(t, repo, "stash", "-q")
		Write(t, repo, "b.txt", "second stash\n")
		Git(t, repo, "stash", "-q")
		Write(t, repo, "c.txt", "staged new\n")
		Git(t, repo, "add", "c.txt")
	},
}

// EmbeddedRepoPath is where EmbeddedRepo puts its embedded repository.
const EmbeddedRepoPath = "tools/born"

// EmbeddedRepo creates a repository at dir holding, at EmbeddedRepoPath and
// not registered as a submodule, another repository with a commit and
// changes of its own, and an untracked file of the outer one.
func EmbeddedRepo(t testing.TB, dir string) {
	t.Helper()
	Init(t, dir)
	Write(t, dir, "f", "x\n")
	inner := filepath.Join(dir, EmbeddedRepoPath)
	Init(t, inner)
	Write(t, inner, "x", "x\n")
	Git(t, inner, "add", ".")
	Git(t, inner, "commit", "-q", "-m", "x")
	Write(t, inner, "x", "changed\n")
	Write(t, inner, "y", "untracked\n")
}

// NestedSubmodulePath is where NestedSubmodules puts the submodule of its
// submodule, relative to the outer repository.
const NestedSubmodulePath = SubmodulePath + "/" + "deps/inner"

// NestedSubmodules creates a repository at dir with a submodule at
// SubmodulePath that itself has a submodule (at NestedSubmodulePath), each
// with a change in its working tree.
func NestedSubmodules(t testing.TB, dir string) {
	t.Helper()
	inner := NewRepo(t)
	Write(t, inner, "inner.go", "package inner\n")
	Commit(t, inner, "inner")
	lib := NewRepo(t)
	Write(t, lib, "lib.go", "package lib\n")
	Commit(t, lib, "lib")
	Git(t, lib, "submodule", "-q", "add", inner, "deps/inner")
	Git(t, lib, "commit", "-q", "-m", "add inner")
	Init(t, dir)
	Write(t, dir, "main.go", "package main\n")
	Commit(t, dir, "app")
	Git(t, dir, "submodule", "-q", "add", lib, SubmodulePath)
	Git(t, dir, "submodule", "-q", "update", "--init", "--recursive")
	Git(t, dir, "commit", "-q", "-m", "add lib")
	Write(t, filepath.Join(dir, NestedSubmodulePath), "inner.go", "package inner // changed\n")
	Write(t, filepath.Join(dir, SubmodulePath), "lib.go", "package lib // changed\n")
	Write(t, dir, "main.go", "package main // changed\n")
}
