package gittest

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// views are the git commands whose output must be the same in an original
// and its restored copy: everything a person (or an agent) would look at.
var views = [][]string{
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

// An Option changes what CompareRepos compares.
type Option func(*compareOptions)

type compareOptions struct {
	ignoreRemoteURLs bool
}

// IgnoreRemoteURLs leaves remote URLs (remote.*.url and remote.*.pushurl)
// out of the comparison of config. A capture removes the credentials in
// them, so a restored copy of a repository with credentials in its remote
// URLs differs there on purpose; check those with CheckCredentialsRestored.
func IgnoreRemoteURLs() Option {
	return func(o *compareOptions) { o.ignoreRemoteURLs = true }
}

var remoteURLLine = regexp.MustCompile(`(?m)^remote\.\S*\.(url|pushurl) .*\n`)

// CompareRepos fails the test (with Errorf, so every difference shows)
// unless restored is indistinguishable from orig: git's view of status,
// diffs, index, history, refs, stash and config, and every file's bytes,
// exec bit and symlink target. Nested repositories are not descended into;
// compare them on their own.
func CompareRepos(t testing.TB, orig, restored string, opts ...Option) {
	t.Helper()
	var o compareOptions
	for _, opt := range opts {
		opt(&o)
	}
	for _, v := range views {
		a, errA := GitErr(orig, nil, v...)
		b, errB := GitErr(restored, nil, v...)
		if o.ignoreRemoteURLs && v[0] == "config" {
			a, b = remoteURLLine.ReplaceAllString(a, ""), remoteURLLine.ReplaceAllString(b, "")
		}
		if a != b || (errA == nil) != (errB == nil) {
			t.Errorf("git %s differs:\noriginal:\n%s%v\nrestored:\n%s%v", strings.Join(v, " "), a, errA, b, errB)
		}
	}
	fa, fb := WorktreeFiles(t, orig), WorktreeFiles(t, restored)
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

// WorktreeFiles describes the files git would capture, by slash-separated
// path: everything outside .git that is not ignored ("file exec=<bool>
// <hash>", "symlink <target>"), not descending into nested repositories
// ("nested repository").
func WorktreeFiles(t testing.TB, repo string) map[string]string {
	t.Helper()
	ignored := map[string]bool{}
	out := Git(t, repo, "status", "--ignored", "--porcelain=v1", "-z", "--untracked-files=all")
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
