package gitstate

import (
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

	"github.com/tether-dev/tether/internal/gitstate/gittest"
)

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
	os.Exit(m.Run())
}

// The user's git, files and repositories in tests: see package gittest.
var (
	git          = gittest.Git
	gitErr       = gittest.GitErr
	write        = gittest.Write
	newRepo      = gittest.NewRepo
	compareRepos = gittest.CompareRepos
)

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
