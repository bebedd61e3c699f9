package local

import (
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tether-dev/tether/internal/statesync"
	"github.com/tether-dev/tether/test/agentwriter"
	"github.com/tether-dev/tether/test/gitserver"
)

// `tether run --repo` clones in the supervisor with the token from the
// environment; neither child (the sync, the runner with the agent's tools)
// inherits it, and nothing the supervisor prints or records shows it.
func TestSupervisorKeepsGitTokenFromChildren(t *testing.T) {
	const tok = "ghp_0123456789abcdefghijABCDEFGHIJ012345"
	root, work := t.TempDir(), t.TempDir()
	for _, args := range [][]string{
		{"init", "-q", "-b", "main", work},
		{"-C", work, "commit", "-q", "--allow-empty", "-m", "init"},
		{"clone", "-q", "--bare", work, filepath.Join(root, "app.git")},
	} {
		g := exec.Command("git", args...)
		g.Env = agentwriter.GitEnv()
		if out, err := g.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	srv := gitserver.New(t, root, gitserver.Options{Auth: "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+tok))})
	t.Setenv(statesync.EnvGitToken, tok)

	cfg, out := fakeConfig(t, "done", 512<<20)
	spec, err := statesync.ParseRepoSpec(srv.URL + "/app.git")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Repos = []statesync.RepoSpec{spec}
	st, err := runSupervisor(t, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.Workspace, "repos/app/.git")); err != nil {
		t.Fatalf("the repository was not cloned: %v (headers seen %q)", err, srv.Seen())
	}
	for _, child := range []string{"sync", "runner"} {
		if _, err := os.Stat(filepath.Join(cfg.Workspace, ".tether/fake-saw-git-token-"+child)); err == nil {
			t.Errorf("the %s inherited %s", child, statesync.EnvGitToken)
		}
	}
	status, _ := os.ReadFile(filepath.Join(cfg.Workspace, StatusFile))
	for what, s := range map[string]string{"terminal": out.String(), "supervisor.json": string(status), "state": st.Error} {
		if strings.Contains(s, tok) {
			t.Errorf("%s shows the token: %s", what, s)
		}
	}
}
