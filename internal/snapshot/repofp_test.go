package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// repoWorkspace returns the repo at store URL url and a workspace holding an
// empty git repository at repos/app.
func repoWorkspace(t *testing.T, url string) (*Repo, string, string) {
	repo := openRepo(t, url)
	ws := t.TempDir()
	app := filepath.Join(ws, "repos", "app")
	must(t, os.MkdirAll(app, 0o755))
	git(t, app, "init", "-q", "-b", "main")
	return repo, ws, app
}

// settle waits until everything written so far is older than racyWindow, so
// that the next save's fingerprint can be trusted.
func settle() { time.Sleep(racyWindow + 20*time.Millisecond) }

// TestRepoFingerprint: a save skips the capture of a repository whose
// fingerprint is unchanged, and captures again after every kind of change a
// capture would see, including ones that touch only .git (a commit, a stash
// entry dropped, local config) or only ignored files' neighbours.
func TestRepoFingerprint(t *testing.T) {
	ctx := context.Background()
	repo, ws, app := repoWorkspace(t, "file://"+t.TempDir())
	writeFile(t, filepath.Join(app, "main.go"), []byte("package main\n"), 0o644)
	writeFile(t, filepath.Join(app, ".gitignore"), []byte("*.log\n"), 0o644)
	git(t, app, "add", "-A")
	git(t, app, "commit", "-qm", "first")
	git(t, app, "stash", "list")
	cache := t.TempDir()

	saveNow := func() *SaveStats {
		t.Helper()
		// A new Saver each time: fingerprints survive in the stat cache, as
		// for `tether snapshot save` run once per cycle.
		s, err := NewSaver(repo, ws, SaveOptions{CacheDir: cache})
		must(t, err)
		defer s.Close()
		st, err := s.Save(ctx)
		must(t, err)
		return st
	}
	settle()
	if st := saveNow(); st.ReposCaptured != 1 {
		t.Fatalf("first save: %+v", st)
	}
	settle()
	if st := saveNow(); st.ReposUnchanged != 1 || st.ReposCaptured != 0 {
		t.Fatalf("save without change: %d unchanged, %d captured; want the capture kept", st.ReposUnchanged, st.ReposCaptured)
	}

	changes := []struct {
		name string
		do   func()
	}{
		{"same-size edit", func() { writeFile(t, filepath.Join(app, "main.go"), []byte("package mane\n"), 0o644) }},
		{"untracked file", func() { writeFile(t, filepath.Join(app, "new.txt"), []byte("new\n"), 0o644) }},
		{"staged", func() { git(t, app, "add", "new.txt") }},
		{"commit", func() { git(t, app, "commit", "-qam", "second") }},
		{"stash push", func() {
			writeFile(t, filepath.Join(app, "main.go"), []byte("package stash1\n"), 0o644)
			git(t, app, "stash", "-q")
			writeFile(t, filepath.Join(app, "main.go"), []byte("package stash2\n"), 0o644)
			git(t, app, "stash", "-q")
		}},
		{"stash drop of an older entry (reflog only)", func() { git(t, app, "stash", "drop", "-q", "stash@{1}") }},
		{"branch created", func() { git(t, app, "branch", "topic") }},
		{"checkout", func() { git(t, app, "checkout", "-q", "topic") }},
		{"packed refs", func() { git(t, app, "pack-refs", "--all") }},
		{"local config", func() { git(t, app, "config", "user.name", "Someone Else") }},
		{"executable bit", func() { must(t, os.Chmod(filepath.Join(app, "main.go"), 0o755)) }},
		{"file removed", func() { must(t, os.Remove(filepath.Join(app, "new.txt"))) }},
		{"empty directory", func() { must(t, os.Mkdir(filepath.Join(app, "empty"), 0o755)) }},
	}
	for _, c := range changes {
		c.do()
		settle()
		st := saveNow()
		if st.ReposUnchanged != 0 {
			t.Fatalf("%s: the save kept the previous capture (fingerprint unchanged)", c.name)
		}
		settle()
		if st := saveNow(); st.ReposUnchanged != 1 {
			t.Fatalf("after %s: the next save without change captured again (%+v)", c.name, st)
		}
	}

	// Racy: a change within racyWindow of the save is never trusted to a
	// fingerprint, so the save after it captures again.
	writeFile(t, filepath.Join(app, "main.go"), []byte("package racy1\n"), 0o644)
	if st := saveNow(); st.ReposUnchanged != 0 {
		t.Fatal("a save right after an edit kept the previous capture")
	}
	if st := saveNow(); st.ReposUnchanged != 0 {
		t.Fatal("the save after a racy capture trusted its fingerprint")
	}

	// The skipped captures restore exactly what is there.
	settle()
	saveNow()
	out := filepath.Join(t.TempDir(), "out")
	_, err := Restore(ctx, repo, out, RestoreOptions{})
	must(t, err)
	if want, got := gitView(t, app), gitView(t, filepath.Join(out, "repos", "app")); want != got {
		t.Fatalf("restored repository differs:\nwant:\n%s\ngot:\n%s", want, got)
	}
}

// A capture the caller reports as changed (RepoChanged) records no
// fingerprint: the next save cannot keep it by an old fingerprint, even when
// the working tree is back to what that fingerprint saw.
func TestRepoChangedSkipsFingerprint(t *testing.T) {
	ctx := context.Background()
	repo, ws, app := repoWorkspace(t, "file://"+t.TempDir())
	writeFile(t, filepath.Join(app, "a.txt"), []byte("one\n"), 0o644)
	settle()
	changed := false
	s, err := NewSaver(repo, ws, SaveOptions{RepoChanged: func(string) bool { return changed }})
	must(t, err)
	defer s.Close()
	_, err = s.Save(ctx)
	must(t, err)
	settle()
	if st, err := s.Save(ctx); err != nil || st.ReposUnchanged != 1 {
		t.Fatalf("second save: %+v, %v; want the first capture kept", st, err)
	}
	writeFile(t, filepath.Join(app, "a.txt"), []byte("two\n"), 0o644)
	settle()
	changed = true
	st, err := s.Save(ctx)
	must(t, err)
	if st.ReposUnchanged != 0 || st.ReposCaptured != 1 {
		t.Fatalf("save of a repository reported changed: %+v", st)
	}
	changed = false
	settle()
	if st, err := s.Save(ctx); err != nil || st.ReposUnchanged != 0 {
		t.Fatalf("the save after a capture without fingerprint kept it: %+v, %v", st, err)
	}
	settle()
	if st, err := s.Save(ctx); err != nil || st.ReposUnchanged != 1 {
		t.Fatalf("the save after that: %+v, %v; want the capture kept again", st, err)
	}
}
