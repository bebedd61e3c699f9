package snapshot

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
			testGitCase(t, c, "repos/"+c.Name, nil)
		})
	}
}

// TestGitCasesAnywhere: repositories outside repos/ (where agents clone
// when the task says so) are captured as git state, not file by file, with
// TestGitCasesRoundTrip's checks: at src/app, at proj (a child of the
// workspace root), and at repos/a/vendor/b, a repository nested in another
// one without being its submodule. The cases are the ones that exercise
// the capture's parts (work in progress, an operation in progress,
// submodules, an unborn repository, credentials, a chain of captures).
func TestGitCasesAnywhere(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("the git CLI is required")
		}
		t.Skip("the git CLI is not on PATH")
	}
	pick := map[string]bool{"ordinary": true, "unborn": true, "merge-conflict": true, "submodule": true, "credentials": true, "chain-of-four": true}
	outer := func(t *testing.T, ws string) int {
		gittest.Ordinary(t, filepath.Join(ws, "repos", "a"))
		return 1
	}
	for _, at := range []struct {
		dir   string
		setup func(*testing.T, string) int
	}{{"src/app", nil}, {"proj", nil}, {"repos/a/vendor/b", outer}} {
		for _, c := range gittest.Cases() {
			if !pick[c.Name] {
				continue
			}
			t.Run(strings.ReplaceAll(at.dir, "/", "_")+"/"+c.Name, func(t *testing.T) {
				t.Parallel()
				testGitCase(t, c, at.dir, at.setup)
			})
		}
	}
}

// testGitCase runs case c with its repository at the workspace path at;
// setup, when set, prepares the workspace first and returns how many
// repositories it made.
func testGitCase(t *testing.T, c gittest.Case, at string, setup func(*testing.T, string) int) {
	ctx := context.Background()
	ws := t.TempDir()
	dir := filepath.Join(ws, filepath.FromSlash(at))
	others := 0
	if setup != nil {
		others = setup(t, ws)
	}
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
			if want := others + 1 + len(c.Nested); st.Repos != want {
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
			rdir := filepath.Join(out, filepath.FromSlash(at))
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

// TestRepoAnywhereOneLineEdit: a one-line edit in a repository outside
// repos/ uploads about what the same edit uploads under repos/: each is an
// incremental capture, not the repository file by file.
func TestRepoAnywhereOneLineEdit(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("the git CLI is required")
		}
		t.Skip("the git CLI is not on PATH")
	}
	ws := t.TempDir()
	where := []string{"repos/x", "src/app", "proj", "repos/a/vendor/b"}
	gittest.Ordinary(t, filepath.Join(ws, "repos/a"))
	for _, r := range where {
		dir := filepath.Join(ws, filepath.FromSlash(r))
		gittest.Ordinary(t, dir)
		gittest.Git(t, dir, "commit", "-q", "-m", "work")
	}
	repo := openRepo(t, storetest.FileURL(t.TempDir()))
	s, err := NewSaver(repo, ws, SaveOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	first, err := s.Save(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if first.Repos != len(where)+1 || len(first.ReposAsFiles) != 0 || first.Files != 0 {
		t.Fatalf("first save: %d repos, %d as files, %d plain files; want %d, 0, 0", first.Repos, len(first.ReposAsFiles), first.Files, len(where)+1)
	}
	up := map[string]int64{}
	for _, r := range where {
		gittest.Write(t, filepath.Join(ws, filepath.FromSlash(r)), "a.txt", "a\none more line\n")
		st, err := s.Save(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.ReposCaptured != 1 {
			t.Errorf("edit in %s: %d repositories captured, want 1", r, st.ReposCaptured)
		}
		up[r] = st.BytesUploaded
	}
	t.Logf("bytes uploaded by a one-line edit: %v (first save %d)", up, first.BytesUploaded)
	for _, r := range where[1:] {
		if up[r] > up["repos/x"]*3/2+256 {
			t.Errorf("a one-line edit in %s uploaded %d bytes, under repos/ %d", r, up[r], up["repos/x"])
		}
	}
	out := filepath.Join(t.TempDir(), "restored")
	rs, err := Restore(ctx, repo, out, RestoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range append(where, "repos/a") {
		gittest.CompareRepos(t, filepath.Join(ws, filepath.FromSlash(r)), filepath.Join(out, filepath.FromSlash(r)))
	}
	for _, r := range rs.Repos {
		if r.Mode != RepoModeGit {
			t.Errorf("%s came back %s, want git", r.Path, r.Mode)
		}
	}
}
