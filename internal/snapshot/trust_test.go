package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tether-dev/tether/internal/gitstate"
	"github.com/tether-dev/tether/internal/gitstate/gittest"
	"github.com/tether-dev/tether/internal/store"
)

// gitWorkspace returns a workspace with a plain file and a git repository
// at repos/app holding gittest's ordinary changes.
func gitWorkspace(t *testing.T) (ws, app string) {
	t.Helper()
	ws = t.TempDir()
	writeFile(t, filepath.Join(ws, "notes.txt"), []byte("notes\n"), 0o644)
	app = filepath.Join(ws, "repos", "app")
	gittest.Init(t, app)
	gittest.OrdinaryChanges(t, app)
	return ws, app
}

// rewriteGitStates replaces the stored manifest of snapshot id by a
// format-1 manifest of the same snapshot whose repositories' git states fn
// changed: what someone who can write the store can do.
func rewriteGitStates(t *testing.T, repo *Repo, id string, fn func(*gitstate.State)) {
	t.Helper()
	ctx := context.Background()
	m, err := repo.LoadManifest(ctx, id)
	must(t, err)
	for i := range m.Repos {
		fn(m.Repos[i].State)
	}
	m.Version, m.Base, m.from = 1, nil, nil
	raw, err := marshalManifest(m)
	must(t, err)
	must(t, repo.st.Put(ctx, repo.manifestKey(id), encode(raw)))
}

// TestRestoreRunsNothingFromStore: a snapshot whose stored git state was
// rewritten to name programs (filter and smudge with attributes naming
// them, fsmonitor, hooksPath with a post-checkout hook, sshCommand,
// include.path, external diff, textconv and more) restores without running
// any, keeps none in the restored config, and verify names the repository
// and every planted key.
func TestRestoreRunsNothingFromStore(t *testing.T) {
	ctx := context.Background()
	repo := openRepo(t, "file://"+t.TempDir())
	ws, _ := gitWorkspace(t)
	save(t, repo, ws, SaveOptions{CacheDir: t.TempDir()})
	rep, err := Verify(ctx, repo, VerifyOptions{})
	must(t, err)
	if len(rep.Problems) > 0 {
		t.Fatalf("verify of an untampered snapshot: %q", rep.Problems)
	}

	h := gittest.NewHostile(t)
	rewriteGitStates(t, repo, FormatID(1), func(st *gitstate.State) {
		for _, kv := range h.Config {
			st.Config = append(st.Config, gitstate.ConfigEntry{Key: kv[0], Value: kv[1]})
		}
		if st.Info == nil {
			st.Info = map[string][]byte{}
		}
		st.Info["attributes"] = []byte(h.Attributes)
		if st.Hooks == nil {
			st.Hooks = map[string][]byte{}
		}
		for n, b := range h.Hooks {
			st.Hooks[n] = []byte(b)
		}
	})

	target := filepath.Join(t.TempDir(), "restored")
	_, err = Restore(ctx, repo, target, RestoreOptions{})
	if ran := h.Ran(t); len(ran) > 0 {
		t.Fatalf("restore ran planted programs: %v (restore: %v)", ran, err)
	}
	must(t, err)
	h.CheckRestored(t, filepath.Join(target, "repos", "app"))

	rep, err = Verify(ctx, repo, VerifyOptions{})
	must(t, err)
	all := strings.ToLower(strings.Join(rep.Problems, "\n"))
	for _, k := range h.Keys {
		if !strings.Contains(all, `"`+k+`"`) {
			t.Errorf("verify does not name the planted %s; problems:\n%s", k, strings.Join(rep.Problems, "\n"))
		}
	}
	for _, p := range rep.Problems {
		if !strings.Contains(p, "repos/app") || !strings.Contains(p, FormatID(1)) {
			t.Errorf("problem %q names neither the repository nor the snapshot", p)
		}
	}
}

// TestVerifyReportsForgedGitState: a git state restore would refuse (an
// object id that is an option) is a verify problem, not only a restore
// failure.
func TestVerifyReportsForgedGitState(t *testing.T) {
	ctx := context.Background()
	repo := openRepo(t, "file://"+t.TempDir())
	ws, _ := gitWorkspace(t)
	save(t, repo, ws, SaveOptions{CacheDir: t.TempDir()})
	rewriteGitStates(t, repo, FormatID(1), func(st *gitstate.State) { st.WorktreeTree = "--index-output=/tmp/x" })
	rep, err := Verify(ctx, repo, VerifyOptions{})
	must(t, err)
	if len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], "repos/app") || !strings.Contains(rep.Problems[0], "working tree") {
		t.Fatalf("verify problems %q, want one naming repos/app and its working tree", rep.Problems)
	}
	if _, err := Restore(ctx, repo, filepath.Join(t.TempDir(), "r"), RestoreOptions{}); err == nil || !strings.Contains(err.Error(), "working tree") {
		t.Fatalf("restore of a forged git state: %v", err)
	}
}

// TestNoConfigTokenInStore: tokens in a repository's config values (an
// alias pushing to a URL with credentials, a branch description holding a
// GitHub token, a remote URL with a GitLab token) are in none of the
// store's objects, decoded, nor in the restored repository's config or
// objects.
func TestNoConfigTokenInStore(t *testing.T) {
	const gh = "ghp_St0reT0kenSt0reT0kenSt0reT0kenSt0reT0"
	secrets := []string{gh, "BOTS3CRET", "glpat-St0reT0kenSt0reT0ken"}
	ctx := context.Background()
	dir := t.TempDir()
	repo := openRepo(t, "file://"+dir)
	ws, app := gitWorkspace(t)
	gittest.Git(t, app, "config", "alias.x", "!git push https://bot:BOTS3CRET@h.example.com/x")
	gittest.Git(t, app, "config", "branch.main.description", "token "+gh)
	gittest.Git(t, app, "config", "remote.origin.url", "https://oauth2:glpat-St0reT0kenSt0reT0ken@gitlab.example.com/g/p.git")
	save(t, repo, ws, SaveOptions{CacheDir: t.TempDir()})

	st, err := store.Open(ctx, "file://"+dir)
	must(t, err)
	defer st.Close()
	n := 0
	must(t, st.List(ctx, "", func(oi store.ObjectInfo) error {
		obj, err := st.Get(ctx, oi.Key)
		if err != nil {
			return err
		}
		data, err := decodeLimit(obj, maxBaseLen, "the largest object")
		if err != nil {
			data = obj // not an encoded object (a lock, say): as it is
		}
		n++
		for _, s := range secrets {
			if strings.Contains(string(data), s) || strings.Contains(string(obj), s) {
				t.Errorf("stored object %s holds %q", oi.Key, s)
			}
		}
		return nil
	}))
	if n < 3 {
		t.Fatalf("listed %d stored objects, want the manifest, a base and chunks", n)
	}

	target := filepath.Join(t.TempDir(), "restored")
	_, err = Restore(ctx, repo, target, RestoreOptions{})
	must(t, err)
	rapp := filepath.Join(target, "repos", "app")
	cfg, err := os.ReadFile(filepath.Join(rapp, ".git", "config"))
	must(t, err)
	objs := gittest.Git(t, rapp, "cat-file", "--batch-all-objects", "--batch", "--unordered")
	for _, s := range secrets {
		if strings.Contains(string(cfg), s) || strings.Contains(objs, s) {
			t.Errorf("the restored repository holds %q", s)
		}
	}
	if got := gittest.Git(t, rapp, "config", "alias.x"); got != "!git push https://h.example.com/x\n" {
		t.Errorf("restored alias.x = %q", got)
	}
}
