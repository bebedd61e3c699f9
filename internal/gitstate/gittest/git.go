package gittest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// userConfig is the global git config of the "user" in tests: an identity,
// the file protocol for submodules, no background gc. It is passed through
// GIT_CONFIG_COUNT rather than a file so that no package needs a TestMain to
// create and remove one; captures and restores ignore it (gitstate runs git
// without the caller's GIT_* variables).
var userConfig = [][2]string{
	{"user.name", "Test User"},
	{"user.email", "test@example.com"},
	{"init.defaultBranch", "main"},
	{"protocol.file.allow", "always"},
	{"advice.detachedHead", "false"},
	{"gc.auto", "0"},
	{"maintenance.auto", "false"},
}

// Env is the environment of the "user" running git in tests: the process
// environment without GIT_* variables, no system or global config but the
// test identity, fixed dates (so two runs make the same commits) and a
// non-interactive editor.
func Env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GIT_") {
			env = append(env, kv)
		}
	}
	env = append(env, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "LC_ALL=C",
		"GIT_AUTHOR_DATE=2026-01-02T03:04:05Z", "GIT_COMMITTER_DATE=2026-01-02T03:04:05Z", "GIT_EDITOR=true",
		fmt.Sprintf("GIT_CONFIG_COUNT=%d", len(userConfig)))
	for i, kv := range userConfig {
		env = append(env, fmt.Sprintf("GIT_CONFIG_KEY_%d=%s", i, kv[0]), fmt.Sprintf("GIT_CONFIG_VALUE_%d=%s", i, kv[1]))
	}
	return env
}

// Git runs git as the user in dir and returns stdout; it fails the test on error.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, err := GitErr(dir, nil, args...)
	if err != nil {
		t.Fatalf("git %s in %s: %v", strings.Join(args, " "), dir, err)
	}
	return out
}

// GitErr runs git as the user in dir with extra environment env and returns
// stdout, and an error that holds stderr when git fails.
func GitErr(dir string, env []string, args ...string) (string, error) {
	c := exec.Command("git", args...)
	c.Dir = dir
	c.Env = append(Env(), env...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Run(); err != nil {
		return out.String(), fmt.Errorf("%v: %s", err, errb.String())
	}
	return out.String(), nil
}

// Write writes content to the file rel under dir, creating directories.
func Write(t testing.TB, dir, rel, content string) {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Init creates an empty repository at dir (and its parents), passing extra
// arguments to git init.
func Init(t testing.TB, dir string, args ...string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	Git(t, filepath.Dir(dir), append(append([]string{"init", "-q"}, args...), dir)...)
}

// NewRepo creates an empty repository in a new temporary directory.
func NewRepo(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	Init(t, dir)
	return dir
}

// Commit stages everything in repo and commits it with message msg.
func Commit(t testing.TB, repo, msg string) {
	t.Helper()
	Git(t, repo, "add", "-A")
	Git(t, repo, "commit", "-q", "-m", msg)
}
