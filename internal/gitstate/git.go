package gitstate

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// gitConfigArgs are passed to every git command. They make a capture or a
// restore independent of the user's global and system configuration and stop
// git from running anything the repository's own config asks for (hooks,
// fsmonitor daemons), from writing split-index files next to the user's index,
// and from starting background gc or maintenance.
var gitConfigArgs = []string{
	"-c", "core.quotePath=false",
	"-c", "core.hooksPath=/dev/null",
	"-c", "core.fsmonitor=false",
	"-c", "core.splitIndex=false",
	"-c", "gc.auto=0",
	"-c", "maintenance.auto=false",
	"-c", "safe.directory=*",
	"-c", "advice.addEmbeddedRepo=false",
	"-c", "advice.detachedHead=false",
	"-c", "init.defaultBranch=master",
}

// identity is the author and committer of every snapshot commit, set
// explicitly so a capture works where user.name and user.email are unset.
var identity = []string{
	"GIT_AUTHOR_NAME=tether", "GIT_AUTHOR_EMAIL=tether@localhost",
	"GIT_COMMITTER_NAME=tether", "GIT_COMMITTER_EMAIL=tether@localhost",
}

// baseEnv is the environment git runs with: the process environment minus
// every GIT_* variable (tether may itself run under a git hook, whose GIT_DIR
// or GIT_INDEX_FILE would redirect us), with global and system config
// disabled, prompts off, optional locks off and messages in English so errors
// can be matched.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GIT_") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"LC_ALL=C", "LANG=C",
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_TERMINAL_PROMPT=0", "GIT_OPTIONAL_LOCKS=0",
		"GIT_ATTR_NOSYSTEM=1",
	)
}

// traceGit prints every git command and its duration to stderr, for
// finding where a slow capture spends its time.
var traceGit = os.Getenv("TETHER_GITSTATE_TRACE") != ""

// gitCmd runs git with a fixed environment.
type gitCmd struct {
	dir string   // working directory
	env []string // extra environment (GIT_DIR, GIT_INDEX_FILE, ...)
}

// gitError is a failed git command with its stderr.
type gitError struct {
	args   []string
	stderr string
	err    error
}

func (e *gitError) Error() string {
	msg := strings.TrimSpace(e.stderr)
	if msg == "" {
		msg = e.err.Error()
	}
	return fmt.Sprintf("git %s: %s", strings.Join(e.args, " "), msg)
}

func (e *gitError) Unwrap() error { return e.err }

// exitCode returns the exit status of a failed git command, or -1.
func exitCode(err error) int {
	if ge, ok := err.(*gitError); ok {
		if ee, ok := ge.err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
	}
	return -1
}

func (g gitCmd) cmd(ctx context.Context, stdin []byte, args ...string) *exec.Cmd {
	full := append(append([]string{}, gitConfigArgs...), args...)
	c := exec.CommandContext(ctx, "git", full...)
	c.Dir = g.dir
	c.Env = append(baseEnv(), g.env...)
	if stdin != nil {
		c.Stdin = bytes.NewReader(stdin)
	}
	return c
}

// run runs git and returns its stdout.
func (g gitCmd) run(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	c := g.cmd(ctx, stdin, args...)
	var out, errb bytes.Buffer
	c.Stdout = &out
	c.Stderr = &errb
	if traceGit {
		start := time.Now()
		defer func() {
			fmt.Fprintf(os.Stderr, "gitstate: %v git %s\n", time.Since(start).Round(time.Millisecond), strings.Join(args, " "))
		}()
	}
	if err := c.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("git %s: %w", strings.Join(args, " "), ctx.Err())
		}
		return out.Bytes(), &gitError{args: args, stderr: errb.String(), err: err}
	}
	return out.Bytes(), nil
}

// line runs git and returns its stdout without the trailing newline.
func (g gitCmd) line(ctx context.Context, args ...string) (string, error) {
	out, err := g.run(ctx, nil, args...)
	return strings.TrimRight(string(out), "\n"), err
}

func (g gitCmd) with(env ...string) gitCmd {
	return gitCmd{dir: g.dir, env: append(append([]string{}, g.env...), env...)}
}

var (
	versionOnce sync.Once
	versionStr  string
	versionErr  error
)

// gitVersion returns `git version` of the git on PATH, once per process.
func gitVersion(ctx context.Context) (string, error) {
	versionOnce.Do(func() {
		versionStr, versionErr = gitCmd{}.line(ctx, "version")
		if versionErr != nil {
			versionErr = fmt.Errorf("gitstate needs the git CLI on PATH: %w", versionErr)
		}
	})
	return strings.TrimPrefix(versionStr, "git version "), versionErr
}

// IsRepo reports whether dir is the root of a git working tree: it holds a
// .git directory with a HEAD, or a .git file ("gitdir: ...") as linked
// worktrees and submodules have.
func IsRepo(dir string) bool {
	p := filepath.Join(dir, ".git")
	fi, err := os.Lstat(p)
	if err != nil {
		return false
	}
	if fi.IsDir() {
		_, err := os.Stat(filepath.Join(p, "HEAD"))
		return err == nil
	}
	if !fi.Mode().IsRegular() || fi.Size() > 4096 {
		return false
	}
	b, err := os.ReadFile(p)
	return err == nil && bytes.HasPrefix(b, []byte("gitdir: "))
}
