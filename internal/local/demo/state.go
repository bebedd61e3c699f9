package demo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/tether-dev/tether/internal/gitstate"
)

// repoState is what the demo checks survived: the repository's commits,
// index and working tree, and every file's bytes.
type repoState struct {
	Head     string
	Branch   string
	Log      string
	Status   string
	Staged   string // git diff --cached --binary
	Unstaged string // git diff --binary
	Files    map[string]string
}

// git runs git in a repository the agent wrote (and tether restored), so
// through gitstate's hardened command: nothing its config names runs.
func git(dir string, args ...string) (string, error) {
	cmd := gitstate.Command(context.Background(), dir, nil, args...)
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s in %s: %w", strings.Join(args, " "), dir, err)
	}
	return string(out), nil
}

func captureRepo(dir string) (*repoState, error) {
	s := &repoState{Files: map[string]string{}}
	var err error
	for _, q := range []struct {
		dst  *string
		args []string
	}{
		{&s.Head, []string{"rev-parse", "HEAD"}},
		{&s.Branch, []string{"symbolic-ref", "--short", "HEAD"}},
		{&s.Log, []string{"log", "--format=%H %s"}},
		{&s.Status, []string{"status", "--porcelain"}},
		{&s.Staged, []string{"diff", "--cached", "--binary", "--no-ext-diff", "--no-textconv"}},
		{&s.Unstaged, []string{"diff", "--binary", "--no-ext-diff", "--no-textconv"}},
	} {
		if *q.dst, err = git(dir, q.args...); err != nil {
			return nil, err
		}
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			if rel == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h := sha256.Sum256(b)
		s.Files[rel] = hex.EncodeToString(h[:])
		return nil
	})
	return s, err
}

// check is one line of the report's "intact" list.
type check struct {
	What string
	OK   bool
	Note string
}

// compare checks after against before, item by item.
func compare(before, after *repoState) []check {
	var out []check
	add := func(what string, ok bool, note string) { out = append(out, check{what, ok, note}) }
	commits := strings.Count(before.Log, "\n")
	add(fmt.Sprintf("%d commits made before the kill, HEAD %.12s on %s", commits, before.Head, strings.TrimSpace(before.Branch)),
		before.Head == after.Head && before.Log == after.Log && before.Branch == after.Branch, "")
	add("staged changes (git diff --cached)", before.Staged == after.Staged && before.Staged != "", "")
	add("unstaged changes (git diff)", before.Unstaged == after.Unstaged && before.Unstaged != "", "")
	add("git status --porcelain (incl. untracked files)", before.Status == after.Status, strings.ReplaceAll(strings.TrimSpace(before.Status), "\n", ", "))
	var names []string
	for n := range before.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	bad := []string{}
	for _, n := range names {
		if after.Files[n] != before.Files[n] {
			bad = append(bad, n)
		}
	}
	note := strings.Join(names, " ")
	if len(bad) > 0 {
		note = "differ: " + strings.Join(bad, " ")
	}
	add(fmt.Sprintf("bytes of all %d files of the working tree (SHA-256), binary logo.bin included", len(names)), len(bad) == 0 && len(names) > 0, note)
	return out
}
