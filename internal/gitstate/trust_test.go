package gitstate

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tether-dev/tether/internal/gitstate/gittest"
)

// copyState returns a deep copy of st.
func copyState(t *testing.T, st *State) *State {
	t.Helper()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var c State
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return &c
}

// plant adds h's config, attributes and hooks to st.
func plant(st *State, h *gittest.Hostile) {
	for _, kv := range h.Config {
		st.Config = append(st.Config, ConfigEntry{Key: kv[0], Value: kv[1]})
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
}

// TestRestoreRunsNothingFromState: a State rewritten in the store to name
// programs (filter drivers with attributes naming them, fsmonitor,
// hooksPath, sshCommand, include.path, external diff, textconv, merge
// driver, uploadpack, credential helper) restores without running any of
// them, none survives into the restored config (so the user's next git
// commands run none either), and each dropped key is named in a warning.
func TestRestoreRunsNothingFromState(t *testing.T) {
	repo := newRepo(t)
	gittest.OrdinaryChanges(t, repo)
	e := newEnv(t)
	e.capture(repo)
	h := gittest.NewHostile(t)
	st := copyState(t, e.states[0])
	plant(st, h)

	var warnings []string
	dir := filepath.Join(t.TempDir(), "restored")
	err := RestoreWith(context.Background(), dir, st, sources(t, e.bundles, -1, 0), RestoreOptions{Warn: func(m string) { warnings = append(warnings, m) }})
	if ran := h.Ran(t); len(ran) > 0 {
		t.Fatalf("the restore ran planted programs: %v (restore: %v)", ran, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	// Otherwise exact: the same files, index, refs and config but the
	// planted remotes (the user's commands below then change it).
	compareRepos(t, repo, dir, gittest.IgnoreRemoteURLs())
	h.CheckRestored(t, dir)
	all := strings.ToLower(strings.Join(warnings, "\n"))
	for _, k := range h.Keys {
		if !strings.Contains(all, `"`+k+`"`) {
			t.Errorf("no warning names the dropped key %s; warnings:\n%s", k, strings.Join(warnings, "\n"))
		}
	}
	if strings.Contains(all, "touch ") {
		t.Errorf("a warning shows a planted value:\n%s", all)
	}
}

// TestCaptureRunsNothingFromRepo: the repository's own config (which the
// agent writes) names the same programs; a capture runs none of them and
// records none of them.
func TestCaptureRunsNothingFromRepo(t *testing.T) {
	repo := newRepo(t)
	gittest.OrdinaryChanges(t, repo)
	h := gittest.NewHostile(t)
	for _, kv := range h.Config {
		git(t, repo, "config", "--add", kv[0], kv[1])
	}
	write(t, repo, ".git/info/attributes", h.Attributes)
	// Changed files make add hash them, through the clean filter if any.
	write(t, repo, "a.txt", "changed after the plant\n")
	write(t, repo, "tool.sh", "#!/bin/sh\necho changed\n")
	write(t, repo, "new.bin", "untracked\n")
	e := newEnv(t)
	res := e.capture(repo)
	if ran := h.Ran(t); len(ran) > 0 {
		t.Fatalf("the capture ran planted programs: %v", ran)
	}
	if bad := res.State.UnsafeConfig(); len(bad) > 0 {
		t.Errorf("the capture recorded config outside the allow-list: %q", bad)
	}
	for _, c := range res.State.Config {
		for _, k := range h.Keys {
			if strings.EqualFold(c.Key, k) {
				t.Errorf("the capture recorded %s", c.Key)
			}
		}
	}
	// The working tree is captured as it is, without the clean filter.
	dir := e.restore()
	if b, err := os.ReadFile(filepath.Join(dir, "a.txt")); err != nil || string(b) != "changed after the plant\n" {
		t.Errorf("restored a.txt = %q, %v", b, err)
	}
}

// TestRestoreRefusesForgedState: ids that are options, ref targets that
// inject update-ref commands and paths outside the repository are refused
// before git runs, with an error naming what is wrong.
func TestRestoreRefusesForgedState(t *testing.T) {
	repo := newRepo(t)
	gittest.OrdinaryChanges(t, repo)
	e := newEnv(t)
	e.capture(repo)
	outside := filepath.Join(t.TempDir(), "outside")
	for _, tc := range []struct {
		name   string
		forge  func(st *State)
		reason string
	}{
		{"tree-option", func(st *State) { st.WorktreeTree = "--index-output=" + outside }, "working tree"},
		{"snapshot-expression", func(st *State) { st.Snapshot = "HEAD~1" }, "snapshot commit"},
		{"ref-target-injection", func(st *State) {
			st.Refs = append(st.Refs, Ref{Name: "refs/heads/x", Target: st.Snapshot + "\ndelete refs/heads/main"})
		}, "refs/heads/x"},
		{"stash-option", func(st *State) { st.Stash = []StashEntry{{Commit: "--stdin", Message: "m"}} }, "stash"},
		{"intent-to-add-escape", func(st *State) { st.IntentToAdd = []string{"../outside"} }, "intent-to-add"},
		{"intent-to-add-git-dir", func(st *State) { st.IntentToAdd = []string{".git/config"} }, "intent-to-add"},
		{"hook-path", func(st *State) { st.Hooks = map[string][]byte{"../../x": []byte("x")} }, "hook"},
		{"operation-path", func(st *State) {
			st.Operation = &Operation{Kind: "merge", Files: map[string][]byte{"config": []byte("[core]\n\tfsmonitor = x\n")}}
		}, "state file"},
		{"object-format", func(st *State) { st.ObjectFormat = "md5" }, "object format"},
		{"shallow", func(st *State) { st.Shallow = []string{"x\ny"} }, "shallow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := copyState(t, e.states[0])
			tc.forge(st)
			dir := filepath.Join(t.TempDir(), "restored")
			err := Restore(context.Background(), dir, st, e.bundles)
			if err == nil || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("restore of a state with a forged %s: %v, want an error about %q", tc.name, err, tc.reason)
			}
			if _, err := os.Stat(filepath.Join(dir, ".git")); !os.IsNotExist(err) {
				t.Errorf("the refused restore created a repository")
			}
			if _, err := os.Stat(outside); !os.IsNotExist(err) {
				t.Errorf("the refused restore wrote %s", outside)
			}
		})
	}
}

// TestCaptureRedactsConfigValues: credentials in free-text config values
// (an alias that pushes with a token in the URL, a branch description
// holding a token) are in neither the State, the bundle's objects nor the
// restored config, and the entries themselves are kept.
func TestCaptureRedactsConfigValues(t *testing.T) {
	const tok = "ghp_R3dactM3R3dactM3R3dactM3R3dactM3abcd"
	repo := newRepo(t)
	gittest.OrdinaryChanges(t, repo)
	git(t, repo, "config", "alias.pushit", "!git push https://bot:S3CRETBOT@git.example.com/x main")
	git(t, repo, "config", "branch.main.description", "token "+tok)
	git(t, repo, "config", "remote.origin.url", "https://oauth2:glpat-abcdefghij0123456789@gitlab.example.com/g/p.git")
	e := newEnv(t)
	res := e.capture(repo)
	js, _ := json.Marshal(res.State)
	dir := e.restore()
	cfg := git(t, dir, "config", "--list", "--local")
	objs := git(t, dir, "cat-file", "--batch-all-objects", "--batch", "--unordered")
	for _, secret := range []string{tok, "S3CRETBOT", "glpat-abcdefghij0123456789"} {
		for name, text := range map[string]string{"state JSON": string(js), "restored config": cfg, "bundle objects": objs} {
			if strings.Contains(text, secret) {
				t.Errorf("%s contains %q", name, secret)
			}
		}
	}
	for _, want := range []string{
		"alias.pushit=!git push https://git.example.com/x main",
		"branch.main.description=token [redacted]",
		"remote.origin.url=https://gitlab.example.com/g/p.git",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("restored config lacks %q:\n%s", want, cfg)
		}
	}
}

func TestAllowedConfig(t *testing.T) {
	for _, tc := range []struct {
		key, value string
		ok         bool
	}{
		{"remote.origin.url", "https://h/x", true},
		{"Remote.Origin.URL", "https://h/x", true},
		{"branch.main.merge", "refs/heads/main", true},
		{"alias.st", "status -sb", true},
		{"core.autocrlf", "input", true},
		{"diff.algorithm", "histogram", true},
		{"diff.x.xfuncname", "^func", true},
		{"submodule.s.update", "rebase", true},
		{"submodule.s.update", " !rm -rf /", false},
		{"filter.x.smudge", "cat", false},
		{"FILTER.x.smudge", "cat", false},
		{"core.fsmonitor", "true", false},
		{"core.hooksPath", "/tmp", false},
		{"core.sshCommand", "ssh", false},
		{"core.pager", "less", false},
		{"include.path", "/tmp/x", false},
		{"includeIf.gitdir:/.path", "/tmp/x", false},
		{"diff.external", "x", false},
		{"diff.x.textconv", "x", false},
		{"diff.x.command", "x", false},
		{"merge.x.driver", "x", false},
		{"remote.o.uploadpack", "x", false},
		{"remote.o.receivepack", "x", false},
		{"remote.o.vcs", "x", false},
		{"commit.template", "/etc/passwd", false},
		{"credential.helper", "store", false},
		{"http.extraheader", "x", false},
		{"url.https://tok@h/.insteadof", "https://h/", false},
		{"remote.o.url", "a\x00b", false},
		{"remote..url", "x", true}, // an empty subsection is git's own business
		{"remote", "x", false},
		{".url", "x", false},
		{"remote.o.", "x", false},
		{"remote.o\nx.url", "x", false},
		{"re mote.o.url", "x", false},
	} {
		if got := AllowedConfig(tc.key, tc.value); got != tc.ok {
			t.Errorf("AllowedConfig(%q, %q) = %v, want %v", tc.key, tc.value, got, tc.ok)
		}
	}
}

// TestCommandEnvironment: the git of gitstate sees neither the caller's
// GIT_* variables, HOME nor askpass programs.
func TestCommandEnvironment(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("GIT_DIR", filepath.Join(home, "elsewhere"))
	t.Setenv("GIT_CONFIG_PARAMETERS", "'core.fsmonitor'='x'")
	t.Setenv("SSH_ASKPASS", "/bin/false")
	c := Command(context.Background(), t.TempDir(), nil, "version")
	env := strings.Join(c.Env, "\n")
	for _, bad := range []string{"GIT_DIR=", "GIT_CONFIG_PARAMETERS=", "SSH_ASKPASS=", "HOME=" + home} {
		if strings.Contains(env, bad) {
			t.Errorf("git's environment holds %s", bad)
		}
	}
	if _, err := os.Stat(filepath.Join(gitHome, ".config/git/attributes")); !errors.Is(err, syscall.ENOTDIR) || !strings.Contains(env, "HOME="+gitHome+"\n") {
		t.Errorf("git's HOME %s can hold files: %v", gitHome, err)
	}
	if out, err := c.Output(); err != nil || !strings.HasPrefix(string(out), "git version") {
		t.Errorf("git version: %q %v", out, err)
	}
}
