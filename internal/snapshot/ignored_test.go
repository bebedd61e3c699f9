package snapshot

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/tether-dev/tether/internal/gitstate/gittest"
	"github.com/tether-dev/tether/internal/store/storetest"
)

// ignoredWorkspace builds a workspace holding a repository at src/app whose
// .gitignore covers a .env, a local config beside tracked ones, a build
// tree (with a repository of its own in it), a log and a large data
// directory; and a repository under repos/ with an ignored file of its own.
func ignoredWorkspace(t *testing.T) (ws string, ignored map[string]string) {
	t.Helper()
	ws = t.TempDir()
	app := filepath.Join(ws, "src", "app")
	gittest.Init(t, app)
	gittest.Write(t, app, ".gitignore", ".env\n/config/local.yml\nbuild/\n*.log\nbig/\n")
	gittest.Write(t, app, "main.go", "package main\n")
	gittest.Write(t, app, "config/app.yml", "port: 8080\n")
	gittest.Git(t, app, "add", "-A")
	gittest.Git(t, app, "commit", "-q", "-m", "app")
	ignored = map[string]string{
		"src/app/.env":             "TOKEN=secret-for-the-dev-db\n",
		"src/app/config/local.yml": "debug: true\n",
		"src/app/build/out/app.o":  strings.Repeat("object code\n", 4096),
		"src/app/debug.log":        "started\n",
		"repos/lib/.env.local":     "LIB=1\n",
	}
	for rel, content := range ignored {
		writeFile(t, filepath.Join(ws, filepath.FromSlash(rel)), []byte(content), 0o600)
	}
	writeFile(t, filepath.Join(app, "big", "data.bin"), bytes.Repeat([]byte("x"), 2<<20), 0o644)
	must(t, os.Symlink("out/app.o", filepath.Join(app, "build", "latest")))
	// A repository inside an ignored directory (a dependency cloned into
	// the build tree) is a repository still.
	dep := filepath.Join(app, "build", "deps", "dep")
	gittest.Ordinary(t, dep)
	lib := filepath.Join(ws, "repos", "lib")
	gittest.Init(t, lib)
	gittest.Write(t, lib, ".gitignore", ".env.local\n")
	gittest.Write(t, lib, "lib.go", "package lib\n")
	gittest.Git(t, lib, "add", "-A")
	gittest.Git(t, lib, "commit", "-q", "-m", "lib")
	gittest.Write(t, app, "main.go", "package main // edited, not committed\n")
	return ws, ignored
}

// TestKeepIgnored: files git ignores inside repositories come back with
// them, smallest first within KeepIgnored; what does not fit is left out
// with its reason; the repositories come back exactly (git sees the same
// status: the ignored files are ignored again), and a save that keeps a
// repository's capture keeps its ignored files too.
func TestKeepIgnored(t *testing.T) {
	eachBackend(t, func(t *testing.T, url string) {
		ws, ignored := ignoredWorkspace(t)
		repo := openRepo(t, url)
		ctx := context.Background()
		s, err := NewSaver(repo, ws, SaveOptions{CacheDir: t.TempDir(), KeepIgnored: 1 << 20})
		must(t, err)
		defer s.Close()
		st, err := s.Save(ctx)
		must(t, err)
		var left []string
		for _, l := range st.LeftOut {
			left = append(left, l.Path+": "+l.Reason)
		}
		if len(st.LeftOut) != 1 || st.LeftOut[0].Path != "src/app/big" || st.LeftOut[0].Size != 2<<20 ||
			!strings.Contains(st.LeftOut[0].Reason, "--keep-ignored (1.0 MiB)") {
			t.Fatalf("left out %q, want only src/app/big (2 MiB, over --keep-ignored)", left)
		}
		if st.Ignored == 0 || st.Repos != 3 {
			t.Fatalf("ignored entries %d, repositories %d (%v); want some and 3", st.Ignored, st.Repos, st.RepoPaths)
		}

		check := func(what string) {
			t.Helper()
			out := filepath.Join(t.TempDir(), "restored")
			_, err := Restore(ctx, repo, out, RestoreOptions{})
			if err != nil {
				t.Fatalf("%s: restore: %v", what, err)
			}
			for rel, content := range ignored {
				got, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(rel)))
				if err != nil || string(got) != content {
					t.Errorf("%s: ignored file %s: %q, %v; want it back", what, rel, got, err)
				}
			}
			if target, err := os.Readlink(filepath.Join(out, "src/app/build/latest")); err != nil || target != "out/app.o" {
				t.Errorf("%s: ignored symlink: %q, %v", what, target, err)
			}
			if fi, err := os.Stat(filepath.Join(out, "src/app/.env")); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: .env mode: %v, %v; want 0600", what, fi, err)
			}
			if _, err := os.Stat(filepath.Join(out, "src/app/big")); !os.IsNotExist(err) {
				t.Errorf("%s: src/app/big is back (%v); it was left out", what, err)
			}
			for _, r := range []string{"src/app", "repos/lib", "src/app/build/deps/dep"} {
				want, got := filepath.Join(ws, r), filepath.Join(out, r)
				gittest.CompareRepos(t, want, got)
				if r == "src/app" {
					// git sees the restored repository as the original minus
					// what was left out (big/ is ignored: invisible to status).
					if a, b := gitView(t, want), gitView(t, got); a != b {
						t.Errorf("%s: %s: git sees\n%s\nwant\n%s", what, r, b, a)
					}
				}
			}
		}
		check("first save")

		// The sync loop says nothing changed in the repositories: their
		// captures are kept, and so are the files they ignore.
		s.opts.CaptureRepo = func(string) bool { return false }
		writeFile(t, filepath.Join(ws, "notes.txt"), []byte("a change outside the repositories\n"), 0o644)
		st, err = s.Save(ctx)
		must(t, err)
		if st.ReposCaptured != 0 || st.Ignored == 0 {
			t.Fatalf("kept save: %d repositories captured, %d ignored entries; want 0 and some", st.ReposCaptured, st.Ignored)
		}
		check("save that kept the captures")

		// A changed ignored file is saved again when its repository is.
		s.opts.CaptureRepo = nil
		ignored["src/app/.env"] = "TOKEN=rotated\n"
		writeFile(t, filepath.Join(ws, "src/app/.env"), []byte(ignored["src/app/.env"]), 0o600)
		settle() // so that this capture's fingerprint can be trusted
		_, err = s.Save(ctx)
		must(t, err)
		// (Checked with the next one: git status, which the check runs on
		// the original, refreshes its index, a change the next save's
		// fingerprint would see.)

		// A fresh Saver (a new process) that finds the repositories
		// unchanged by their fingerprints takes the ignored listing from
		// the stat cache (TestIgnoredListingCached counts the git calls).
		s2, err := NewSaver(repo, ws, SaveOptions{CacheDir: s.opts.CacheDir, KeepIgnored: 1 << 20})
		must(t, err)
		defer s2.Close()
		writeFile(t, filepath.Join(ws, "notes.txt"), []byte("another change outside\n"), 0o644)
		st, err = s2.Save(ctx)
		must(t, err)
		if st.ReposUnchanged == 0 {
			t.Errorf("new saver: no repository found unchanged by its fingerprint: %+v", st)
		}
		check("new saver, after an ignored file changed")
	})
}

// TestKeepIgnoredOff: with KeepIgnored 0 nothing git ignores is saved, and
// nothing is asked of git for it.
func TestKeepIgnoredOff(t *testing.T) {
	ws, ignored := ignoredWorkspace(t)
	repo := openRepo(t, storetest.FileURL(t.TempDir()))
	st := save(t, repo, ws, SaveOptions{})
	if st.Ignored != 0 || len(st.LeftOut) != 0 {
		t.Fatalf("KeepIgnored 0: %d ignored entries kept, %d left out; want none", st.Ignored, len(st.LeftOut))
	}
	out := filepath.Join(t.TempDir(), "restored")
	_, err := Restore(context.Background(), repo, out, RestoreOptions{})
	must(t, err)
	for rel := range ignored {
		if _, err := os.Lstat(filepath.Join(out, filepath.FromSlash(rel))); !os.IsNotExist(err) {
			t.Errorf("%s is back with KeepIgnored 0 (%v)", rel, err)
		}
	}
}

// TestIgnoredEntriesValidated: an entry under a repository's path is
// restored only after the repository, never into its .git, and never
// through a symlink its checkout made.
func TestIgnoredEntriesValidated(t *testing.T) {
	ws := t.TempDir()
	app := filepath.Join(ws, "app")
	gittest.Init(t, app)
	gittest.Write(t, app, "README", "hi\n")
	must(t, os.Symlink("/tmp", filepath.Join(app, "escape")))
	gittest.Git(t, app, "add", "-A")
	gittest.Git(t, app, "commit", "-q", "-m", "c")
	writeFile(t, filepath.Join(app, ".git", "info", "exclude"), []byte("*.secret\n"), 0o644)
	writeFile(t, filepath.Join(app, "a.secret"), []byte("s\n"), 0o600)
	repo := openRepo(t, storetest.FileURL(t.TempDir()))
	st := save(t, repo, ws, SaveOptions{KeepIgnored: 1 << 20})
	if st.Ignored != 1 {
		t.Fatalf("%d ignored entries kept, want 1 (app/a.secret)", st.Ignored)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		edit  func(m *Manifest)
		error string
	}{
		{"a hook into the repository's .git", func(m *Manifest) {
			m.Entries = append(m.Entries,
				Entry{Path: "app/.git", Type: TypeDir, Mode: 0o755},
				Entry{Path: "app/.git/hooks", Type: TypeDir, Mode: 0o755},
				Entry{Path: "app/.git/hooks/post-checkout", Type: TypeFile, Mode: 0o755})
		}, "inside the .git of repository"},
		{"through the checkout's symlink", func(m *Manifest) {
			m.Entries = append(m.Entries,
				Entry{Path: "app/escape", Type: TypeDir, Mode: 0o755},
				Entry{Path: "app/escape/planted", Type: TypeFile, Mode: 0o644})
		}, "is where the repository's checkout made a symlink"},
		{"a directory where the checkout made a symlink", func(m *Manifest) {
			m.Entries = append(m.Entries, Entry{Path: "app/escape", Type: TypeDir, Mode: 0o777})
		}, "is where the repository's checkout made a symlink"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := repo.LoadManifest(ctx, st.ID)
			must(t, err)
			tc.edit(m)
			m.Version, m.Base, m.from = 1, nil, nil
			m.ID = FormatID(uint64(len(mustIDs(t, repo)) + 1))
			raw, err := marshalManifest(m)
			must(t, err)
			must(t, repo.st.PutIfAbsent(ctx, repo.manifestKey(m.ID), encode(raw)))
			out := filepath.Join(t.TempDir(), "restored")
			_, err = Restore(ctx, repo, out, RestoreOptions{Snapshot: m.ID})
			if err == nil || !strings.Contains(err.Error(), tc.error) {
				t.Fatalf("restore: %v; want an error saying %q", err, tc.error)
			}
			if _, err := os.Lstat("/tmp/planted"); err == nil {
				os.Remove("/tmp/planted")
				t.Fatal("restore wrote through the symlink")
			}
		})
	}
}

func mustIDs(t *testing.T, repo *Repo) []string {
	t.Helper()
	ids, err := repo.SnapshotIDs(context.Background())
	must(t, err)
	sort.Strings(ids)
	return ids
}

// TestIgnoredListingCached: a new process (a new Saver on the same stat
// cache) that keeps a repository's capture walks the ignored paths the
// cache lists and starts no git process at all; a new ignored file changes
// the fingerprint, so the next save captures and lists again, with the
// capture's own git (no second rev-parse), and keeps the new file; a stat
// cache whose listing names a path outside its repository is not trusted.
func TestIgnoredListingCached(t *testing.T) {
	ws, ignored := ignoredWorkspace(t)
	repo := openRepo(t, storetest.FileURL(t.TempDir()))
	ctx := context.Background()
	opts := SaveOptions{CacheDir: t.TempDir(), KeepIgnored: 1 << 20}
	saveOnce := func(what string) (*SaveStats, []string) {
		t.Helper()
		log := filepath.Join(t.TempDir(), "git.log")
		wrap := t.TempDir()
		real, err := exec.LookPath("git")
		must(t, err)
		writeFile(t, filepath.Join(wrap, "git"), []byte("#!/bin/sh\necho \"$*\" >> "+log+"\nexec "+real+" \"$@\"\n"), 0o755)
		t.Setenv("PATH", wrap+string(os.PathListSeparator)+os.Getenv("PATH"))
		s, err := NewSaver(repo, ws, opts)
		must(t, err)
		defer s.Close()
		st, err := s.Save(ctx)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		data, _ := os.ReadFile(log)
		var calls []string
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			if l != "" {
				calls = append(calls, l)
			}
		}
		return st, calls
	}
	count := func(calls []string, sub string) (n int) {
		for _, c := range calls {
			if strings.Contains(c, sub) {
				n++
			}
		}
		return n
	}
	restored := func(what string) string {
		t.Helper()
		out := filepath.Join(t.TempDir(), "restored")
		if _, err := Restore(ctx, repo, out, RestoreOptions{}); err != nil {
			t.Fatalf("%s: restore: %v", what, err)
		}
		for rel, content := range ignored {
			if got, err := os.ReadFile(filepath.Join(out, filepath.FromSlash(rel))); err != nil || string(got) != content {
				t.Errorf("%s: ignored file %s: %q, %v; want it back", what, rel, got, err)
			}
		}
		return out
	}

	settle() // so that the first captures' fingerprints can be trusted
	st, calls := saveOnce("first save")
	if st.ReposCaptured != 3 || st.Ignored == 0 {
		t.Fatalf("first save: %d captured, %d ignored entries", st.ReposCaptured, st.Ignored)
	}
	// One rev-parse per capture: the listing of ignored files uses the
	// repository the capture opened.
	if n := count(calls, "ls-files -z --others --ignored"); n != 3 {
		t.Errorf("first save listed ignored files %d times, want once per repository (3): %q", n, calls)
	}
	if n := count(calls, "rev-parse --path-format=absolute"); n != 3 {
		t.Errorf("first save opened repositories %d times, want 3 (one per capture)", n)
	}
	settle()

	writeFile(t, filepath.Join(ws, "notes.txt"), []byte("a change outside the repositories\n"), 0o644)
	st, calls = saveOnce("new process, repositories unchanged")
	// (src/app/build/deps/dep is kept with src/app, which holds it.)
	if st.ReposUnchanged != 2 || st.ReposCaptured != 0 || st.Ignored == 0 {
		t.Fatalf("new process: %d repositories unchanged, %d captured, %d ignored entries; want 2, 0 and some", st.ReposUnchanged, st.ReposCaptured, st.Ignored)
	}
	if len(calls) != 0 {
		t.Errorf("new process with every capture kept ran git %d times: %q", len(calls), calls)
	}
	restored("new process")

	ignored["src/app/new.log"] = "a log written since\n"
	writeFile(t, filepath.Join(ws, "src/app/new.log"), []byte(ignored["src/app/new.log"]), 0o600)
	settle()
	st, calls = saveOnce("after a new ignored file")
	// (The capture finds git's state as it was, so it stores no bundle and
	// counts as no new capture: the git calls say it ran.)
	if count(calls, "rev-parse --path-format=absolute") != 1 || count(calls, "ls-files -z --others --ignored") != 1 || st.ReposUnchanged != 2 {
		t.Errorf("after a new ignored file: %d unchanged, git %q; want src/app captured and listed once, repos/lib and the dependency unchanged (2)", st.ReposUnchanged, calls)
	}
	restored("after a new ignored file")
	settle()

	// An edit of a tracked file: src/app is captured again, and what it
	// ignores is what it ignored (no directory, .gitignore or git file
	// changed), so nobody asks git for it.
	gittest.Write(t, filepath.Join(ws, "src", "app"), "main.go", "package main // edited twice\n")
	settle()
	st, calls = saveOnce("after an edit of a tracked file")
	if count(calls, "rev-parse --path-format=absolute") != 1 || count(calls, "ls-files -z --others --ignored") != 0 || st.ReposCaptured != 1 {
		t.Errorf("after an edit of a tracked file: %d captured, git %q; want src/app captured, its ignored files not listed again", st.ReposCaptured, calls)
	}
	restored("after an edit of a tracked file")
	settle()
	// A .gitignore edited in place, so that an untracked file becomes
	// ignored with no directory changed: listed again.
	writeFile(t, filepath.Join(ws, "src/app/scratch.tmp"), []byte("scratch\n"), 0o600)
	settle()
	saveOnce("after a new untracked file")
	settle()
	gittest.Write(t, filepath.Join(ws, "src", "app"), ".gitignore", ".env\n/config/local.yml\nbuild/\n*.log\nbig/\n*.tmp\n")
	ignored["src/app/scratch.tmp"] = "scratch\n"
	settle()
	st, calls = saveOnce("after a .gitignore edit")
	if count(calls, "ls-files -z --others --ignored") != 1 || st.Ignored == 0 {
		t.Errorf("after a .gitignore edit: %d ignored entries kept, git %q; want src/app's ignored files listed again", st.Ignored, calls)
	}
	restored("after a .gitignore edit")
	settle()

	// A cache naming what lies outside the repository is listed again.
	matches, _ := filepath.Glob(filepath.Join(opts.CacheDir, "snapshot", "*", "stats.json"))
	if len(matches) != 1 {
		t.Fatalf("stat cache files: %q", matches)
	}
	data, err := os.ReadFile(matches[0])
	must(t, err)
	var f map[string]any
	must(t, json.Unmarshal(data, &f))
	listings, _ := f["ignored"].(map[string]any)
	if len(listings) != 3 {
		t.Fatalf("stat cache: ignored listings %v, want one per repository", f["ignored"])
	}
	listings["src/app"] = map[string]any{"units": []string{"src/app/.env", "outside"}}
	listings["repos/lib"] = map[string]any{"units": []string{"repos/lib/../../etc"}}
	data, err = json.Marshal(f)
	must(t, err)
	must(t, os.WriteFile(matches[0], data, 0o600))
	writeFile(t, filepath.Join(ws, "notes.txt"), []byte("one more change outside\n"), 0o644)
	st, calls = saveOnce("damaged cache")
	if n := count(calls, "ls-files -z --others --ignored"); n != 2 {
		t.Errorf("damaged cache: ignored files listed %d times, want 2 (src/app, repos/lib): %q", n, calls)
	}
	out := restored("damaged cache")
	if _, err := os.Lstat(filepath.Join(out, "outside")); !os.IsNotExist(err) {
		t.Errorf("a path the damaged cache named outside its repository was saved (%v)", err)
	}
	if st.ReposUnchanged != 2 || st.ReposCaptured != 0 {
		t.Errorf("damaged cache: %d repositories unchanged, %d captured; want 2 and 0", st.ReposUnchanged, st.ReposCaptured)
	}
}
