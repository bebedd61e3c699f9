package snapshot

import (
	"bytes"
	"context"
	"os"
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
		// unchanged by their fingerprints asks git again, once.
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
