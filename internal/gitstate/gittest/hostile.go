package gittest

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Hostile is what someone who can write the store plants in a repository's
// State to make a restore, or the git commands the agent runs afterwards,
// start a program: config naming programs, attributes that make a checkout
// use a planted filter, and hooks. Each program creates a marker file when
// it runs, so a test shows that nothing ran by finding no marker.
type Hostile struct {
	// Config entries to add to the State's config.
	Config [][2]string
	// Attributes is the content of info/attributes to plant: it names the
	// planted filter drivers for every file.
	Attributes string
	// Hooks to plant in the State's hooks, by name: they must not run
	// during the restore (they are restored, and may run when the user
	// commits or checks out, as the workspace's own scripts may).
	Hooks map[string]string
	// Keys are the canonical config keys that must not be in a restored
	// config.
	Keys []string
	// After are git commands a user runs in the restored repository that
	// would start a planted program had its config survived.
	After [][]string

	markers string
}

// NewHostile writes the planted programs (scripts, a hooks directory, an
// included config file) into a temporary directory and returns what to
// plant.
func NewHostile(t testing.TB) *Hostile {
	t.Helper()
	dir := t.TempDir()
	h := &Hostile{markers: filepath.Join(dir, "markers")}
	if err := os.Mkdir(h.markers, 0o755); err != nil {
		t.Fatal(err)
	}
	// touch names a shell command that creates the marker of one plant.
	touch := func(name string) string { return "touch " + filepath.Join(h.markers, name) }
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, hook := range []string{"post-checkout", "reference-transaction", "post-index-change", "pre-commit", "post-commit"} {
		script(filepath.Join("hooks", hook), touch("hookspath-"+hook))
	}
	included := filepath.Join(dir, "included.config")
	if err := os.WriteFile(included, []byte("[filter \"y\"]\n\tsmudge = \"sh -c '"+touch("include-smudge")+"; cat'\"\n\tclean = cat\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.Config = [][2]string{
		{"filter.x.smudge", "sh -c \"" + touch("filter-smudge") + "; cat\""},
		{"filter.x.clean", "sh -c \"" + touch("filter-clean") + "; cat\""},
		{"filter.z.process", script("process", touch("filter-process")+"\nexit 1")},
		{"core.fsmonitor", script("fsmonitor", touch("fsmonitor")+"\nexit 1")},
		{"core.hooksPath", filepath.Join(dir, "hooks")},
		{"core.sshCommand", "sh -c \"" + touch("sshcommand") + "; exit 1\""},
		{"include.path", included},
		{"includeIf.gitdir:/.path", included},
		{"diff.external", script("extdiff", touch("diff-external"))},
		{"diff.x.textconv", script("textconv", touch("textconv")+"\ncat \"$1\"")},
		{"merge.x.driver", script("mergedriver", touch("merge-driver"))},
		{"remote.origin.uploadpack", script("uploadpack", touch("uploadpack")+"\nexit 1")},
		{"remote.origin.url", filepath.Join(dir, "nowhere.git")},
		{"remote.ssh.url", "ssh://127.0.0.1:1/nowhere.git"},
		{"submodule.s.update", "!" + touch("submodule-update")},
		{"core.pager", script("pager", touch("pager"))},
		{"credential.helper", script("credhelper", touch("credential-helper"))},
	}
	h.Keys = []string{
		"filter.x.smudge", "filter.x.clean", "filter.z.process", "core.fsmonitor", "core.hookspath",
		"core.sshcommand", "include.path", "includeif.gitdir:/.path", "diff.external", "diff.x.textconv",
		"merge.x.driver", "remote.origin.uploadpack", "submodule.s.update", "core.pager", "credential.helper",
	}
	// Later lines win: every planted driver is named for some file.
	h.Attributes = "* filter=x diff=x merge=x\n*.txt filter=y\n*.sh filter=z\n"
	h.Hooks = map[string]string{}
	for _, hook := range []string{"post-checkout", "reference-transaction", "post-index-change"} {
		h.Hooks[hook] = "#!/bin/sh\n" + touch("state-hook-"+hook) + "\n"
	}
	h.After = [][]string{
		{"status"},
		{"diff", "HEAD"},
		{"log", "-p", "-1"},
		{"fetch", "-q", "origin"},
		{"fetch", "-q", "ssh"},
		{"checkout", "-q", "-b", "after-restore"},
	}
	return h
}

// Ran returns the markers the planted programs created, sorted: the plants
// that ran.
func (h *Hostile) Ran(t testing.TB) []string {
	t.Helper()
	ents, err := os.ReadDir(h.markers)
	if err != nil {
		t.Fatal(err)
	}
	var ran []string
	for _, e := range ents {
		ran = append(ran, e.Name())
	}
	sort.Strings(ran)
	return ran
}

// RanOnly is Ran without the markers of the hooks planted in the State's
// hooks, which the user's own git commands may run after a restore.
func (h *Hostile) RanOnly(t testing.TB) []string {
	var ran []string
	for _, m := range h.Ran(t) {
		if !strings.HasPrefix(m, "state-hook-") {
			ran = append(ran, m)
		}
	}
	return ran
}

// CheckRestored fails the test when the restored repository at dir holds a
// planted config key or a planted program ran (check Ran right after the
// restore: the State's hooks may run on the user's commands), then runs the user's After commands there (their
// errors do not matter: the planted remote leads nowhere) and fails it when
// any planted program other than the State's hooks ran.
func (h *Hostile) CheckRestored(t testing.TB, dir string) {
	t.Helper()
	cfg, err := GitErr(dir, nil, "config", "--local", "--list", "--name-only")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, k := range strings.Split(cfg, "\n") {
		have[k] = true
	}
	for _, k := range h.Keys {
		if have[k] {
			t.Errorf("the restored config holds the planted %s", k)
		}
	}
	if ran := h.RanOnly(t); len(ran) > 0 {
		t.Fatalf("planted programs ran: %v", ran)
	}
	for _, args := range h.After {
		GitErr(dir, []string{"GIT_TERMINAL_PROMPT=0"}, args...)
	}
	if ran := h.RanOnly(t); len(ran) > 0 {
		t.Errorf("git commands in the restored repository ran planted programs: %v", ran)
	}
}
