package snapshot

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/gitstate/gittest"
	"github.com/tether-dev/tether/internal/store/storetest"
)

// gitCaseTarget is one store a git case is saved to, with the Saver that
// keeps saving to it between the case's steps (as a sync loop would).
type gitCaseTarget struct {
	name  string
	repo  *Repo
	saver *Saver
}

// TestGitCasesRoundTrip saves a workspace holding each of gittest's edge
// cases at repos/<case> to every backend after every step of the case
// (which must leave the repository untouched), and restores each snapshot
// into a fresh directory: the restored repository (and its submodules) must
// be indistinguishable from the original at that moment. Snapshots before
// the last are restored from file:// only, to keep the test's time down. The
// heavy cases (10k files, 50 MiB) run on file:// and MinIO only and are
// restored after their last step only.
func TestGitCasesRoundTrip(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("the git CLI is required")
		}
		t.Skip("the git CLI is not on PATH")
	}
	for _, c := range gittest.Cases() {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			if c.Heavy && testing.Short() {
				t.Skip("heavy git case skipped in -short mode")
			}
			testGitCase(t, c)
		})
	}
}

func testGitCase(t *testing.T, c gittest.Case) {
	ctx := context.Background()
	ws := t.TempDir()
	dir := filepath.Join(ws, "repos", c.Name)
	var targets []gitCaseTarget
	for _, b := range storetest.Backends(t) {
		if c.Heavy && b.Name == "gofakes3" {
			// The in-process fake adds nothing the real backends do not
			// cover, and runs under the race detector: tens of seconds.
			continue
		}
		repo := openRepo(t, b.URL)
		s, err := NewSaver(repo, ws, SaveOptions{CacheDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		targets = append(targets, gitCaseTarget{name: b.Name, repo: repo, saver: s})
	}
	restored := map[string]string{} // backend: last restored repository
	for i, step := range c.Steps {
		start := time.Now()
		step(t, dir)
		t.Logf("step %d built in %v", i+1, time.Since(start).Round(time.Millisecond))
		last := i == len(c.Steps)-1
		for _, tg := range targets {
			before := gittest.Fingerprint(t, dir)
			start := time.Now()
			st, err := tg.saver.Save(ctx)
			if err != nil {
				t.Fatalf("%s: save after step %d: %v", tg.name, i+1, err)
			}
			took := time.Since(start)
			if d := gittest.DiffFingerprints(before, gittest.Fingerprint(t, dir)); d != "" {
				t.Fatalf("%s: save after step %d modified the repository:\n%s", tg.name, i+1, d)
			}
			t.Logf("%s: save after step %d: %v, %d repos (%d captured), %d bytes uploaded in %d objects",
				tg.name, i+1, took.Round(time.Millisecond), st.Repos, st.ReposCaptured, st.BytesUploaded, st.ObjectsUploaded)
			if want := 1 + len(c.Nested); st.Repos != want {
				t.Errorf("%s: save after step %d holds %d repositories, want %d", tg.name, i+1, st.Repos, want)
			}
			if i == 0 && st.ReposCaptured != st.Repos {
				t.Errorf("%s: first save captured %d of %d repositories", tg.name, st.ReposCaptured, st.Repos)
			}
			// Every step's snapshot is restored from file://; the last one
			// from every backend (it fetches the whole chain of bundles).
			// Heavy cases restore only their last.
			if !last && (c.Heavy || tg.name != "file") {
				continue
			}
			out := filepath.Join(t.TempDir(), "restored")
			start = time.Now()
			if _, err := Restore(ctx, tg.repo, out, RestoreOptions{}); err != nil {
				t.Fatalf("%s: restore after step %d: %v", tg.name, i+1, err)
			}
			t.Logf("%s: restore after step %d: %v", tg.name, i+1, time.Since(start).Round(time.Millisecond))
			rdir := filepath.Join(out, "repos", c.Name)
			compareGitCase(t, fmt.Sprintf("%s, after step %d", tg.name, i+1), c, dir, rdir)
			restored[tg.name] = rdir
		}
	}
	if c.Then == nil {
		return
	}
	// The restored repositories carry on like the original.
	c.Then(t, dir)
	for _, tg := range targets {
		c.Then(t, restored[tg.name])
		compareGitCase(t, tg.name+", after the case's follow-up", c, dir, restored[tg.name])
	}
}

// compareGitCase compares a restored case (and its nested repositories) with
// the original in a subtest named by what, so a failure names the backend
// and step.
func compareGitCase(t *testing.T, what string, c gittest.Case, orig, restored string) {
	t.Run(what, func(t *testing.T) {
		gittest.CompareRepos(t, orig, restored, c.Compare...)
		for _, n := range c.Nested {
			gittest.CompareRepos(t, filepath.Join(orig, n), filepath.Join(restored, n), c.Compare...)
		}
		if c.Check != nil {
			c.Check(t, orig, restored)
		}
	})
}

// TestGitReposBesideOtherThings: repositories whose directory names have
// spaces and non-ASCII letters, a directory under repos/ that is not a
// repository, and workspace entries whose names restore uses for its own
// scratch files, all round-trip together.
func TestGitReposBesideOtherThings(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("the git CLI is required")
		}
		t.Skip("the git CLI is not on PATH")
	}
	ctx := context.Background()
	ws := t.TempDir()
	odd := filepath.Join(ws, "repos", "odd name ü")
	gittest.Ordinary(t, odd)
	merging := filepath.Join(ws, "repos", "merging")
	gittest.MergeConflict(t, merging)
	gittest.Write(t, ws, "repos/plain/notes.txt", "not a repository\n")
	gittest.Write(t, ws, ".tether-bundles/mine.txt", "a user's file with restore's scratch name\n")
	gittest.Write(t, ws, "notes.txt", "outside repos\n")

	repo := openRepo(t, storetest.FileURL(t.TempDir()))
	st := save(t, repo, ws, SaveOptions{CacheDir: t.TempDir()})
	if st.Repos != 2 {
		t.Fatalf("save holds %d repositories, want 2", st.Repos)
	}
	out := filepath.Join(t.TempDir(), "restored")
	if _, err := Restore(ctx, repo, out, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	gittest.CompareRepos(t, odd, filepath.Join(out, "repos", "odd name ü"))
	gittest.CompareRepos(t, merging, filepath.Join(out, "repos", "merging"))
	// Nothing of restore's own is left behind.
	if a, b := dirNames(t, ws), dirNames(t, out); a != b {
		t.Errorf("restored workspace holds %s, want %s", b, a)
	}
	for _, f := range []string{"repos/plain/notes.txt", ".tether-bundles/mine.txt", "notes.txt"} {
		a, _ := os.ReadFile(filepath.Join(ws, f))
		b, err := os.ReadFile(filepath.Join(out, f))
		if err != nil || string(a) != string(b) {
			t.Errorf("%s restored as %q (%v), want %q", f, b, err, a)
		}
	}
}

func dirNames(t *testing.T, dir string) string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return fmt.Sprint(names)
}
