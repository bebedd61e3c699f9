package gitstate

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
	fingerprint  = gittest.Fingerprint
)

func diffFingerprints(t testing.TB, before, after map[string]string) {
	t.Helper()
	if d := gittest.DiffFingerprints(before, after); d != "" {
		t.Fatalf("the capture modified the user's repository:\n%s", d)
	}
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
