package statesync

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tether-dev/tether/internal/snapshot"
	"github.com/tether-dev/tether/internal/store"
	"github.com/tether-dev/tether/internal/store/storetest"
	"github.com/tether-dev/tether/test/agentwriter"
)

func readHydrateFile(t *testing.T, ws string) HydrateResult {
	data, err := os.ReadFile(filepath.Join(ws, HydrateFile))
	must(t, err)
	var r HydrateResult
	must(t, json.Unmarshal(data, &r))
	return r
}

func TestHydrate(t *testing.T) {
	ctx := context.Background()
	url := storetest.FileURL(t.TempDir())
	repo := openRepo(t, url, "hyd")

	// No snapshot: a fresh start.
	ws := filepath.Join(t.TempDir(), "ws")
	res, err := Hydrate(ctx, repo, ws, nil, nil)
	must(t, err)
	if res.Outcome != OutcomeFresh || readHydrateFile(t, ws).Outcome != OutcomeFresh {
		t.Fatalf("hydrate without snapshots: %+v", res)
	}

	// Work happens and is saved.
	must(t, os.WriteFile(filepath.Join(ws, "work.txt"), []byte("precious\n"), 0o644))
	saver, err := snapshot.NewSaver(repo, ws, snapshot.SaveOptions{})
	must(t, err)
	_, err = saver.Save(ctx)
	must(t, err)

	// Same workspace again (a container restart): kept as it is.
	res, err = Hydrate(ctx, repo, ws, nil, nil)
	must(t, err)
	if res.Outcome != OutcomeKept {
		t.Fatalf("hydrate of a live workspace: %+v", res)
	}

	// A new, empty workspace (a new pod): restored.
	ws2 := filepath.Join(t.TempDir(), "ws2")
	res, err = Hydrate(ctx, repo, ws2, nil, nil)
	must(t, err)
	if res.Outcome != OutcomeRestored || res.Snapshot != snapshot.FormatID(1) {
		t.Fatalf("hydrate with a snapshot: %+v", res)
	}
	if b, _ := os.ReadFile(filepath.Join(ws2, "work.txt")); string(b) != "precious\n" {
		t.Fatalf("restored work.txt = %q", b)
	}

	// A non-empty directory that was not hydrated: refused, untouched.
	ws3 := t.TempDir()
	must(t, os.WriteFile(filepath.Join(ws3, "other.txt"), []byte("x"), 0o644))
	if _, err := Hydrate(ctx, repo, ws3, nil, nil); err == nil || !strings.Contains(err.Error(), "refusing to mix") {
		t.Fatalf("hydrate into a foreign non-empty dir: %v", err)
	}
}

func TestHydrateFailsLoudlyOnMissingChunk(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	repo := openRepo(t, storetest.FileURL(dir), "broken")
	ws := t.TempDir()
	must(t, os.WriteFile(filepath.Join(ws, "work.txt"), []byte("saved work that must not be silently lost\n"), 0o644))
	saver, err := snapshot.NewSaver(repo, ws, snapshot.SaveOptions{})
	must(t, err)
	_, err = saver.Save(ctx)
	must(t, err)
	var chunk string
	must(t, repo.Store().List(ctx, "default/broken/objects/", func(oi store.ObjectInfo) error { chunk = oi.Key; return nil }))
	must(t, repo.Store().Delete(ctx, chunk))

	target := filepath.Join(t.TempDir(), "ws")
	_, err = Hydrate(ctx, repo, target, nil, nil)
	if err == nil || !strings.Contains(err.Error(), chunk) || !strings.Contains(err.Error(), "must not start empty") {
		t.Fatalf("hydrate with a missing chunk: %v; want an error naming %s", err, chunk)
	}
	if _, err := os.Stat(filepath.Join(target, HydrateFile)); !os.IsNotExist(err) {
		t.Fatal("a failed hydrate wrote hydrate.json, which would let the agent start")
	}
}

func TestHydrateClonesRepos(t *testing.T) {
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "proj.git")
	work := t.TempDir()
	for _, args := range [][]string{
		{"init", "-q", "-b", "main", work},
		{"-C", work, "commit", "-q", "--allow-empty", "-m", "init"},
		{"-C", work, "branch", "feature"},
		{"clone", "-q", "--bare", work, src},
	} {
		g := exec.Command("git", args...)
		g.Env = agentwriter.GitEnv()
		if out, err := g.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	spec, err := ParseRepoSpec("file://" + src + "#feature")
	must(t, err)
	if spec.Name != "proj" || spec.Branch != "feature" {
		t.Fatalf("ParseRepoSpec: %+v", spec)
	}
	repo := openRepo(t, storetest.FileURL(t.TempDir()), "clone")
	ws := t.TempDir()
	res, err := Hydrate(ctx, repo, ws, []RepoSpec{spec}, nil)
	must(t, err)
	if len(res.Cloned) != 1 || res.Cloned[0] != "repos/proj" {
		t.Fatalf("cloned %v", res.Cloned)
	}
	out, err := exec.Command("git", "-C", filepath.Join(ws, "repos/proj"), "branch", "--show-current").Output()
	if err != nil || strings.TrimSpace(string(out)) != "feature" {
		t.Fatalf("cloned branch %q %v", out, err)
	}
	if _, err := ParseRepoSpec("#main"); err == nil {
		t.Fatal("a --repo without URL was accepted")
	}
}
