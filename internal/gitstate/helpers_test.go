package gitstate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// testGlobalConfig is the global git config of the "user" in tests: an
// identity and the file protocol for submodules. Captures ignore it.
var testGlobalConfig string

func TestMain(m *testing.M) {
	if _, err := exec.LookPath("git"); err != nil {
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "gitstate tests need the git CLI on PATH")
			os.Exit(1)
		}
		fmt.Fprintln(os.Stderr, "skipping gitstate tests: git CLI not on PATH")
		os.Exit(0)
	}
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	dir, err := os.MkdirTemp("", "gitstate-test-home-")
	if err != nil {
		panic(err)
	}
	testGlobalConfig = filepath.Join(dir, "gitconfig")
	cfg := "[user]\n\tname = Test User\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n[protocol \"file\"]\n\tallow = always\n[advice]\n\tdetachedHead = false\n[gc]\n\tauto = 0\n[maintenance]\n\tauto = false\n"
	if err := os.WriteFile(testGlobalConfig, []byte(cfg), 0o644); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// userEnv is the environment of the "user" running git in tests.
func userEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GIT_") {
			env = append(env, kv)
		}
	}
	return append(env, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+testGlobalConfig, "LC_ALL=C",
		"GIT_AUTHOR_DATE=2026-01-02T03:04:05Z", "GIT_COMMITTER_DATE=2026-01-02T03:04:05Z", "GIT_EDITOR=true")
}

// git runs git as the user in dir and returns stdout; it fails the test on error.
func git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, err := gitErr(dir, nil, args...)
	if err != nil {
		t.Fatalf("git %s in %s: %v", strings.Join(args, " "), dir, err)
	}
	return out
}

func gitErr(dir string, env []string, args ...string) (string, error) {
	c := exec.Command("git", args...)
	c.Dir = dir
	c.Env = append(userEnv(), env...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Run(); err != nil {
		return out.String(), fmt.Errorf("%v: %s", err, errb.String())
	}
	return out.String(), nil
}

func write(t testing.TB, dir, rel, content string) {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func newRepo(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	git(t, filepath.Dir(dir), "init", "-q", dir)
	return dir
}

// env is one test's private dirs for captures.
type env struct {
	t       testing.TB
	objects string
	scratch string
	bundles []string
	states  []*State
	took    time.Duration // of the last Capture call
	// concurrent says the user changes the repository during captures: do
	// not require it unchanged.
	concurrent bool
}

func newEnv(t testing.TB) *env {
	d := t.TempDir()
	return &env{t: t, objects: filepath.Join(d, "objects"), scratch: filepath.Join(d, "scratch")}
}

// capture captures repo on top of the last state, checks that the user's
// repository did not change, and keeps the bundle (if any) in the chain.
func (e *env) capture(repo string) *Result {
	e.t.Helper()
	var before map[string]string
	if !e.concurrent {
		before = fingerprint(e.t, repo)
	}
	var prev *State
	if len(e.states) > 0 {
		prev = e.states[len(e.states)-1]
	}
	start := time.Now()
	res, err := Capture(context.Background(), repo, prev, CaptureOptions{ObjectDir: e.objects, ScratchDir: e.scratch})
	if err != nil {
		e.t.Fatal(err)
	}
	e.took = time.Since(start)
	e.t.Logf("capture %d of %s: %v, bundle %d bytes, full %v", len(e.states)+1, filepath.Base(repo), time.Since(start).Round(time.Millisecond), fileSize(res.Bundle), res.Full)
	if !e.concurrent {
		after := fingerprint(e.t, repo)
		diffFingerprints(e.t, before, after)
	}
	st := res.State
	if res.Bundle != "" {
		if res.Full {
			e.bundles = nil
		}
		// Keep the bundle out of the scratch dir, as the caller would.
		keep := filepath.Join(filepath.Dir(e.scratch), fmt.Sprintf("bundle-%03d", len(e.states)))
		if err := os.Rename(res.Bundle, keep); err != nil {
			e.t.Fatal(err)
		}
		e.bundles = append(e.bundles, keep)
	}
	// The State must survive a JSON round trip unchanged.
	b, err := json.Marshal(&st)
	if err != nil {
		e.t.Fatal(err)
	}
	var back State
	if err := json.Unmarshal(b, &back); err != nil {
		e.t.Fatal(err)
	}
	e.states = append(e.states, &back)
	return res
}

// restore restores the last state from the chain into a new directory.
func (e *env) restore() string {
	e.t.Helper()
	dir := filepath.Join(e.t.TempDir(), "restored")
	start := time.Now()
	if err := Restore(context.Background(), dir, e.states[len(e.states)-1], e.bundles); err != nil {
		e.t.Fatal(err)
	}
	e.t.Logf("restore from %d bundles: %v", len(e.bundles), time.Since(start).Round(time.Millisecond))
	return dir
}

func fileSize(p string) int64 {
	if p == "" {
		return 0
	}
	fi, err := os.Stat(p)
	if err != nil {
		return -1
	}
	return fi.Size()
}

// fingerprint hashes every file of the git dir and records mode, size and
// time of every working tree file, so any write by a capture shows. Modification times of object files
// are left out: git may freshen an existing object it finds while writing.
func fingerprint(t testing.TB, repo string) map[string]string {
	t.Helper()
	fp := map[string]string{}
	err := filepath.WalkDir(repo, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repo, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		v := fi.Mode().String()
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			v += " -> " + target
		case d.Type().IsRegular() && !strings.HasPrefix(filepath.ToSlash(rel), ".git/"):
			// Working tree files: any write changes size or time.
			v += fmt.Sprintf(" %d %s", fi.Size(), fi.ModTime())
		case d.Type().IsRegular() && strings.HasPrefix(filepath.ToSlash(rel), ".git/objects/") && !strings.Contains(rel, "info"):
			// Object and pack files are named by their content; a write
			// shows as a new name or a new size.
			v += fmt.Sprintf(" %d", fi.Size())
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			v += " " + hex.EncodeToString(sum[:8])
			// Git freshens (touches) objects and a split index's shared
			// index file when it uses them; contents must not change.
			if !strings.Contains(filepath.ToSlash(rel), "objects/") && !strings.HasPrefix(filepath.Base(rel), "sharedindex.") {
				v += " " + fi.ModTime().String()
			}
		}
		fp[rel] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

func diffFingerprints(t testing.TB, a, b map[string]string) {
	t.Helper()
	var diffs []string
	for k, v := range a {
		if b[k] != v {
			diffs = append(diffs, fmt.Sprintf("%s: %q -> %q", k, v, b[k]))
		}
	}
	for k, v := range b {
		if _, ok := a[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: new %q", k, v))
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Fatalf("the capture modified the user's repository:\n%s", strings.Join(diffs, "\n"))
	}
}

// compareRepos fails the test unless restored is indistinguishable from
// orig: git's view of status, diffs, index, history, refs, stash and every
// file's bytes, exec bit and symlink target.
func compareRepos(t testing.TB, orig, restored string) {
	t.Helper()
	views := [][]string{
		{"status", "--porcelain=v2", "--branch"},
		{"status", "--porcelain=v2", "--branch", "--untracked-files=all"},
		{"status", "--long"},
		{"diff", "--binary"},
		{"diff", "--cached", "--binary"},
		{"ls-files", "-s"},
		{"log", "--all", "--format=%H %P %T %an %ae %at %cn %ce %ct %D %s"},
		{"for-each-ref", "--format=%(objectname) %(refname) %(symref)"},
		{"stash", "list"},
		{"rev-parse", "--symbolic-full-name", "HEAD"},
		{"config", "--get-regexp", `^(remote|branch|submodule|user|pull|alias|core\.autocrlf)`},
	}
	for _, v := range views {
		a, errA := gitErr(orig, nil, v...)
		b, errB := gitErr(restored, nil, v...)
		if a != b || (errA == nil) != (errB == nil) {
			t.Errorf("git %s differs:\noriginal:\n%s%v\nrestored:\n%s%v", strings.Join(v, " "), a, errA, b, errB)
		}
	}
	fa, fb := worktreeFiles(t, orig), worktreeFiles(t, restored)
	for k, v := range fa {
		if fb[k] != v {
			t.Errorf("file %s: original %s, restored %s", k, v, fb[k])
		}
	}
	for k, v := range fb {
		if _, ok := fa[k]; !ok {
			t.Errorf("file %s only in restored: %s", k, v)
		}
	}
}

// worktreeFiles describes the files git would capture: everything outside
// .git that is not ignored, not descending into nested repositories.
func worktreeFiles(t testing.TB, repo string) map[string]string {
	t.Helper()
	ignored := map[string]bool{}
	out := git(t, repo, "status", "--ignored", "--porcelain=v1", "-z", "--untracked-files=all")
	for _, e := range strings.Split(out, "\x00") {
		if strings.HasPrefix(e, "!! ") {
			ignored[strings.TrimSuffix(e[3:], "/")] = true
		}
	}
	files := map[string]string{}
	err := filepath.WalkDir(repo, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := filepath.ToSlash(strings.TrimPrefix(p, repo+string(filepath.Separator)))
		if p == repo {
			return nil
		}
		if rel == ".git" {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if ignored[rel] {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if d.Name() == ".git" {
				return filepath.SkipDir
			}
			if _, err := os.Lstat(filepath.Join(p, ".git")); err == nil {
				files[rel] = "nested repository"
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			files[rel] = "symlink " + target
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			files[rel] = fmt.Sprintf("file exec=%v %x", fi.Mode()&0o100 != 0, sum[:8])
		default:
			files[rel] = fi.Mode().String()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
