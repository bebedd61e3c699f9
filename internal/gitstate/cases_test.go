package gitstate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tether-dev/tether/internal/gitstate/gittest"
)

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	failed []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.failed = append(r.failed, fmt.Sprintf(format, args...))
}

func TestCompareReposDetectsDifferences(t *testing.T) {
	repo := newRepo(t)
	gittest.OrdinaryChanges(t, repo)
	e := newEnv(t)
	e.capture(repo)
	for name, spoil := range map[string]func(dir string){
		"file bytes": func(d string) { write(t, d, "b.txt", "b unstaged!\n") },
		"exec bit":   func(d string) { os.Chmod(filepath.Join(d, "tool.sh"), 0o644) },
		"index":      func(d string) { git(t, d, "add", "b.txt") },
		"untracked":  func(d string) { write(t, d, "extra", "x") },
		"branch":     func(d string) { git(t, d, "branch", "-f", "feature", "HEAD~1") },
		"config":     func(d string) { git(t, d, "config", "branch.feature.remote", "origin") },
		"symlink":    func(d string) { os.Remove(filepath.Join(d, "link")); os.Symlink("b.txt", filepath.Join(d, "link")) },
	} {
		dir := e.restore()
		spoil(dir)
		r := &recorder{TB: t}
		compareRepos(r, repo, dir)
		if len(r.failed) == 0 {
			t.Errorf("compareRepos did not notice a change of %s", name)
		}
	}
}

func TestUnbornRepo(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	gittest.Unborn(t, repo)
	e := newEnv(t)
	res := e.capture(repo)
	if !res.State.Head.Unborn() || res.State.Head.Branch != "refs/heads/main" {
		t.Fatalf("head = %+v, want unborn main", res.State.Head)
	}
	compareRepos(t, repo, e.restore())
	// Then the first commit, incrementally.
	gittest.UnbornCommit(t, repo)
	res = e.capture(repo)
	if res.Full || res.Bundle == "" {
		t.Fatalf("second capture: full %v bundle %q, want incremental", res.Full, res.Bundle)
	}
	compareRepos(t, repo, e.restore())
}

func TestEmptyRepo(t *testing.T) {
	repo := newRepo(t)
	e := newEnv(t)
	e.capture(repo)
	compareRepos(t, repo, e.restore())
}

func TestOnlyUntracked(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	gittest.OnlyUntracked(t, repo)
	e := newEnv(t)
	e.capture(repo)
	compareRepos(t, repo, e.restore())
}

func TestDetachedHead(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	gittest.DetachedHead(t, repo)
	e := newEnv(t)
	res := e.capture(repo)
	if !res.State.Head.Detached() {
		t.Fatalf("head = %+v, want detached", res.State.Head)
	}
	compareRepos(t, repo, e.restore())
}

func TestDeletedButStagedModified(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	gittest.DeletedButStagedModified(t, repo)
	e := newEnv(t)
	e.capture(repo)
	dir := e.restore()
	compareRepos(t, repo, dir)
	if got := git(t, dir, "status", "--porcelain=v1"); got != "MD f\n" {
		t.Errorf("restored status %q, want %q", got, "MD f\n")
	}
}

func TestNothingChangedNoBundle(t *testing.T) {
	repo := newRepo(t)
	gittest.OrdinaryChanges(t, repo)
	e := newEnv(t)
	first := e.capture(repo)
	again := e.capture(repo)
	if again.Bundle != "" {
		t.Fatalf("capture without changes wrote bundle %s", again.Bundle)
	}
	a, _ := json.Marshal(first.State)
	b, _ := json.Marshal(again.State)
	if !bytes.Equal(a, b) {
		t.Fatalf("capture without changes changed the state:\n%s\n%s", a, b)
	}
	// A change only to refs is a change.
	git(t, repo, "tag", "v2")
	if res := e.capture(repo); res.Bundle == "" {
		t.Fatal("a new tag produced no bundle")
	}
	compareRepos(t, repo, e.restore())
}

func TestChainOfThreeIncrementals(t *testing.T) {
	repo := newRepo(t)
	gittest.OrdinaryChanges(t, repo)
	e := newEnv(t)
	e.capture(repo)
	steps := gittest.ChainSteps
	for i, step := range steps {
		step(t, repo)
		res := e.capture(repo)
		if res.Full || res.Bundle == "" || res.State.ChainDepth != i+1 {
			t.Fatalf("capture %d: full %v bundle %q depth %d, want incremental at depth %d", i+2, res.Full, res.Bundle, res.State.ChainDepth, i+1)
		}
	}
	if len(e.bundles) != 4 {
		t.Fatalf("chain has %d bundles, want 4", len(e.bundles))
	}
	dir := e.restore()
	compareRepos(t, repo, dir)
	// Every bundle after the first depends on the one before: a chain missing
	// its middle must fail loudly, not restore something else.
	broken := []string{e.bundles[0], e.bundles[1], e.bundles[3]}
	err := Restore(context.Background(), filepath.Join(t.TempDir(), "x"), e.states[len(e.states)-1], broken)
	if err == nil {
		t.Fatal("restore from a chain with a missing bundle succeeded")
	}
	t.Logf("restore with a missing bundle: %v", err)
}

func TestMaxChainStartsFullBundle(t *testing.T) {
	repo := newRepo(t)
	write(t, repo, "f", "0\n")
	e := newEnv(t)
	var fulls []int
	for i := 0; i < 5; i++ {
		write(t, repo, "f", fmt.Sprintf("%d\n", i))
		var prev *State
		if len(e.states) > 0 {
			prev = e.states[len(e.states)-1]
		}
		res, err := Capture(context.Background(), repo, prev, CaptureOptions{ObjectDir: e.objects, ScratchDir: e.scratch, MaxChain: 2})
		if err != nil {
			t.Fatal(err)
		}
		if res.Full {
			fulls = append(fulls, i)
			e.bundles = nil
		}
		e.bundles = append(e.bundles, res.Bundle)
		e.states = append(e.states, &res.State)
	}
	if fmt.Sprint(fulls) != "[0 3]" {
		t.Fatalf("full bundles at captures %v, want [0 3] with MaxChain 2", fulls)
	}
	compareRepos(t, repo, e.restore())
}

func TestMergeConflictInProgress(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	gittest.MergeConflict(t, repo)
	e := newEnv(t)
	res := e.capture(repo)
	if res.State.Operation == nil || res.State.Operation.Kind != "merge" || res.State.Conflicts == "" {
		t.Fatalf("operation %+v conflicts %q, want a merge with conflicts", res.State.Operation, res.State.Conflicts)
	}
	dir := e.restore()
	compareRepos(t, repo, dir)
	// The restored merge can be concluded like the original.
	for _, d := range []string{repo, dir} {
		gittest.ConcludeMerge(t, d)
	}
	compareRepos(t, repo, dir)
	if p := strings.Fields(git(t, dir, "log", "-1", "--format=%P")); len(p) != 2 {
		t.Fatalf("restored merge concluded with parents %v, want 2", p)
	}
}

func TestRebaseInProgress(t *testing.T) {
	t.Run("merge backend", func(t *testing.T) { testRebaseInProgress(t, "--merge", "rebase-merge") })
	t.Run("apply backend", func(t *testing.T) { testRebaseInProgress(t, "--apply", "rebase-apply") })
}

func testRebaseInProgress(t *testing.T, backend, kind string) {
	repo := filepath.Join(t.TempDir(), "repo")
	gittest.RebaseConflict(t, repo, backend)
	e := newEnv(t)
	res := e.capture(repo)
	if res.State.Operation == nil || res.State.Operation.Kind != kind {
		t.Fatalf("operation %+v, want %s", res.State.Operation, kind)
	}
	dir := e.restore()
	compareRepos(t, repo, dir)
	// Continue the rebase in both to the end: same history.
	for _, d := range []string{repo, dir} {
		gittest.ContinueRebase(t, d)
	}
	compareRepos(t, repo, dir)
	if got := git(t, dir, "log", "--format=%s", "main..topic"); got != "topic 3\ntopic 2\ntopic 1\n" {
		t.Fatalf("restored rebase ended with %q", got)
	}
}

func TestSubmodule(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "app")
	gittest.Submodule(t, repo)
	sub := filepath.Join(repo, gittest.SubmodulePath)
	e := newEnv(t)
	res := e.capture(repo)
	if len(res.State.Submodules) != 1 || res.State.Submodules[0].Path != gittest.SubmodulePath {
		t.Fatalf("submodules %+v, want vendor/lib", res.State.Submodules)
	}
	if !IsRepo(sub) {
		t.Fatal("IsRepo(submodule with a .git file) = false")
	}
	es := newEnv(t)
	es.capture(sub)

	dir := e.restore()
	// The caller restores each submodule into its path after the parent.
	if err := Restore(context.Background(), filepath.Join(dir, "vendor/lib"), es.states[0], es.bundles); err != nil {
		t.Fatal(err)
	}
	compareRepos(t, repo, dir)
	compareRepos(t, sub, filepath.Join(dir, "vendor/lib"))
}

func TestCredentialsNeverStored(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	gittest.Credentials(t, repo)
	e := newEnv(t)
	res := e.capture(repo)
	js, _ := json.Marshal(res.State)
	dir := e.restore()
	// Exactly the original but for the credentials in remote URLs.
	compareRepos(t, repo, dir, gittest.IgnoreRemoteURLs())
	cfg := git(t, dir, "config", "--list", "--local")
	// Every object of the bundle, uncompressed.
	objs := git(t, dir, "cat-file", "--batch-all-objects", "--batch", "--unordered")
	for _, secret := range []string{"s3cr3t", "alice"} {
		for name, text := range map[string]string{"state JSON": string(js), "restored config": cfg, "bundle objects": objs} {
			if strings.Contains(text, secret) {
				t.Errorf("%s contains %q", name, secret)
			}
		}
	}
	if !strings.Contains(cfg, "remote.origin.url=https://git.example.com/team/repo.git") ||
		!strings.Contains(cfg, "remote.ssh.url=ssh://git@git.example.com/team/repo.git") {
		t.Errorf("restored remotes are not the sanitised URLs:\n%s", cfg)
	}
	// Upstream tracking survives.
	if got := git(t, dir, "rev-parse", "--abbrev-ref", "main@{upstream}"); got != "origin/main\n" {
		t.Errorf("restored upstream %q", got)
	}
}

func TestSanitizeURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:tok@github.com/a/b.git":         "https://github.com/a/b.git",
		"https://ghp_abc@github.com/a/b":              "https://github.com/a/b",
		"HTTPS://u:p@h:8443/x?token=abc#frag":         "HTTPS://h:8443/x",
		"https://h/x.git?access_token=abc":            "https://h/x.git",
		"https://u:p@h":                               "https://h",
		"ssh://git:pw@host/x":                         "ssh://git@host/x",
		"ssh://git@host:22/x":                         "ssh://git@host:22/x",
		"git@github.com:a/b.git":                      "git@github.com:a/b.git",
		"/srv/git/x.git":                              "/srv/git/x.git",
		"file:///srv/git/x.git":                       "file:///srv/git/x.git",
		"+refs/heads/*:refs/remotes/origin/*":         "+refs/heads/*:refs/remotes/origin/*",
		"https://u:p%40ss@h/x":                        "https://h/x",
		"https://oauth2:glpat-xyz@gitlab.com/g/p.git": "https://gitlab.com/g/p.git",
		"http://proxyuser:proxypass@proxy.local:3128": "http://proxy.local:3128",
	} {
		if got := SanitizeURL(in); got != want {
			t.Errorf("SanitizeURL(%q) = %q, want %q", in, got, want)
		}
	}
	if got := string(sanitizeText([]byte("Merge branch 'main' of https://u:tok@h/x\n"))); got != "Merge branch 'main' of https://h/x\n" {
		t.Errorf("sanitizeText: %q", got)
	}
}

func TestIsRepo(t *testing.T) {
	repo := newRepo(t)
	write(t, repo, "f", "x\n")
	git(t, repo, "add", ".")
	git(t, repo, "commit", "-q", "-m", "one")
	wt := filepath.Join(t.TempDir(), "wt")
	git(t, repo, "worktree", "add", "-q", wt)
	for dir, want := range map[string]bool{repo: true, wt: true, filepath.Join(repo, ".git"): false, t.TempDir(): false, filepath.Join(repo, "nope"): false} {
		if got := IsRepo(dir); got != want {
			t.Errorf("IsRepo(%s) = %v, want %v", dir, got, want)
		}
	}
	// A linked worktree is captured and restored as a repository of its own.
	write(t, wt, "f", "in worktree\n")
	e := newEnv(t)
	e.capture(wt)
	compareRepos(t, wt, e.restore())
	// A subdirectory is not a root.
	os.MkdirAll(filepath.Join(repo, "sub"), 0o755)
	if _, err := Capture(context.Background(), filepath.Join(repo, "sub"), nil, CaptureOptions{ObjectDir: e.objects, ScratchDir: e.scratch}); err == nil {
		t.Error("capture of a subdirectory succeeded")
	}
}

func TestRestoreRefusesNonEmptyDir(t *testing.T) {
	repo := newRepo(t)
	write(t, repo, "f", "x\n")
	e := newEnv(t)
	e.capture(repo)
	dir := t.TempDir()
	write(t, dir, "precious", "do not overwrite\n")
	if err := Restore(context.Background(), dir, e.states[0], e.bundles); err == nil {
		t.Fatal("restore into a non-empty directory succeeded")
	}
}

func TestEmbeddedRepositories(t *testing.T) {
	repo := newRepo(t)
	write(t, repo, "f", "x\n")
	// An embedded repository with a commit becomes a gitlink (a submodule
	// the caller captures on its own); one without commits cannot be, so it
	// is left out of this capture and named in Result.Unborn for the caller
	// to capture as a repository of its own, instead of failing the capture.
	born := filepath.Join(repo, "tools/born")
	git(t, repo, "init", "-q", born)
	write(t, born, "x", "x\n")
	git(t, born, "add", ".")
	git(t, born, "commit", "-q", "-m", "x")
	unborn := filepath.Join(repo, "scratch/unborn")
	git(t, repo, "init", "-q", unborn)
	write(t, unborn, "y", "y\n")
	e := newEnv(t)
	res := e.capture(repo)
	if len(res.State.Submodules) != 1 || res.State.Submodules[0].Path != "tools/born" {
		t.Errorf("submodules %+v, want tools/born", res.State.Submodules)
	}
	if len(res.Unborn) != 1 || res.Unborn[0] != "scratch/unborn" {
		t.Errorf("unborn %q, want scratch/unborn", res.Unborn)
	}
	dir := e.restore()
	if _, err := os.Stat(filepath.Join(dir, "f")); err != nil {
		t.Error(err)
	}
}

func TestShallowClone(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "shallow")
	gittest.ShallowClone(t, repo)
	e := newEnv(t)
	res := e.capture(repo)
	if len(res.State.Shallow) != 1 {
		t.Fatalf("shallow %v, want one shallow commit", res.State.Shallow)
	}
	dir := e.restore()
	compareRepos(t, repo, dir)
	gittest.ShallowCommit(t, repo)
	e.capture(repo)
	dir = e.restore()
	compareRepos(t, repo, dir)
	git(t, dir, "fsck", "--no-progress")
}

func TestSHA256Repo(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	gittest.SHA256(t, repo)
	e := newEnv(t)
	res := e.capture(repo)
	if res.State.ObjectFormat != "sha256" || len(res.State.Snapshot) != 64 {
		t.Fatalf("object format %q, snapshot %q", res.State.ObjectFormat, res.State.Snapshot)
	}
	compareRepos(t, repo, e.restore())
	write(t, repo, "b.txt", "again\n")
	e.capture(repo)
	compareRepos(t, repo, e.restore())
}

func TestBisectInProgress(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	gittest.Bisect(t, repo)
	e := newEnv(t)
	res := e.capture(repo)
	if res.State.Operation == nil || res.State.Operation.Kind != "bisect" {
		t.Fatalf("operation %+v, want bisect", res.State.Operation)
	}
	dir := e.restore()
	compareRepos(t, repo, dir)
	for _, d := range []string{repo, dir} {
		gittest.BisectStep(t, d)
	}
	compareRepos(t, repo, dir)
	if a, b := git(t, repo, "bisect", "log"), git(t, dir, "bisect", "log"); a != b {
		t.Errorf("bisect log differs:\n%s\n%s", a, b)
	}
}

func TestLocalConfig(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	gittest.LocalConfig(t, repo)
	e := newEnv(t)
	res := e.capture(repo)
	js, _ := json.Marshal(res.State)
	if strings.Contains(string(js), "s3cr3t") {
		t.Errorf("state holds a secret from config: %s", js)
	}
	dir := e.restore()
	compareRepos(t, repo, dir)
	cfg := git(t, dir, "config", "--list", "--local")
	if strings.Contains(cfg, "s3cr3t") || strings.Contains(cfg, "credential.helper") {
		t.Errorf("restored config holds credentials:\n%s", cfg)
	}
	// The agent can commit in the restored repository with its identity.
	c := exec.Command("git", "commit", "-q", "--allow-empty", "-m", "after restore")
	c.Dir = dir
	c.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("commit in restored repository: %v: %s", err, out)
	}
	if got := git(t, dir, "log", "-1", "--format=%an <%ae>"); got != "Agent Smith <agent@example.com>\n" {
		t.Errorf("restored identity %q", got)
	}
	if b, err := os.ReadFile(filepath.Join(dir, ".git/hook.log")); err != nil || string(b) != "hook ran\n" {
		t.Errorf("restored pre-commit hook did not run: %q %v", b, err)
	}
}

func TestRepoPathWithColonAndQuote(t *testing.T) {
	parent := filepath.Join(t.TempDir(), `odd:dir "x"`)
	os.MkdirAll(parent, 0o755)
	repo := filepath.Join(parent, "repo")
	git(t, parent, "init", "-q", repo)
	gittest.OrdinaryChanges(t, repo)
	e := newEnv(t)
	e.capture(repo)
	write(t, repo, "b.txt", "next\n")
	if res := e.capture(repo); res.Full {
		t.Error("second capture is full")
	}
	compareRepos(t, repo, e.restore())
}

func TestSplitIndexRepo(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	gittest.SplitIndex(t, repo)
	e := newEnv(t)
	e.capture(repo)
	compareRepos(t, repo, e.restore())
}

func TestObjectDirBudgetStartsNewChain(t *testing.T) {
	repo := newRepo(t)
	e := newEnv(t)
	var prev *State
	var fulls []int
	for i := 0; i < 4; i++ {
		write(t, repo, "data.txt", strings.Repeat(fmt.Sprintf("version %d\n", i), 20000))
		res, err := Capture(context.Background(), repo, prev, CaptureOptions{ObjectDir: e.objects, ScratchDir: e.scratch, MaxObjectDirBytes: 300 << 10})
		if err != nil {
			t.Fatal(err)
		}
		if res.Full {
			fulls = append(fulls, i)
		}
		prev = &res.State
	}
	// Each version is ~200 KB uncompressed in the object dir: the budget of
	// 300 KB is exceeded after two captures.
	if fmt.Sprint(fulls) != "[0 2]" {
		t.Fatalf("full bundles at captures %v, want [0 2]", fulls)
	}
	if n := dirSize(e.objects); n > 600<<10 {
		t.Errorf("object dir holds %d bytes after a new chain", n)
	}
}

func TestCherryPickConflictInProgress(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	gittest.CherryPickConflict(t, repo)
	e := newEnv(t)
	res := e.capture(repo)
	if res.State.Operation == nil || res.State.Operation.Kind != "cherry-pick" {
		t.Fatalf("operation %+v, want cherry-pick", res.State.Operation)
	}
	dir := e.restore()
	compareRepos(t, repo, dir)
	for _, d := range []string{repo, dir} {
		gittest.ContinueCherryPick(t, d)
	}
	compareRepos(t, repo, dir)
	if got := git(t, dir, "log", "-1", "--format=%s"); got != "side change\n" {
		t.Errorf("restored cherry-pick concluded as %q", got)
	}
}

func TestIntentToAdd(t *testing.T) {
	repo := filepath.Join(t.TempDir(), "repo")
	gittest.IntentToAdd(t, repo)
	e := newEnv(t)
	res := e.capture(repo)
	if fmt.Sprint(res.State.IntentToAdd) != "[dir/other new file.txt]" {
		t.Fatalf("intent-to-add %q", res.State.IntentToAdd)
	}
	compareRepos(t, repo, e.restore())
}

func TestRestoreRefusesForgedRefNames(t *testing.T) {
	repo := newRepo(t)
	write(t, repo, "f", "x\n")
	git(t, repo, "add", "f")
	git(t, repo, "commit", "-q", "-m", "one")
	e := newEnv(t)
	e.capture(repo)
	st := *e.states[0]
	st.Refs = append([]Ref{}, st.Refs...)
	st.Refs[0].Name = "refs/heads/x " + st.Head.Commit + "\ndelete refs/heads/main"
	if err := Restore(context.Background(), filepath.Join(t.TempDir(), "r"), &st, e.bundles); err == nil || !strings.Contains(err.Error(), "invalid ref") {
		t.Fatalf("restore with a forged ref name: %v", err)
	}
}
