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
// git from running anything a repository's config (the user's, or one a
// restore wrote from a State read from the store) could name: hooks,
// fsmonitor daemons, askpass programs, credential helpers, an ssh command,
// commit signing, the ext:: transport, attributes from a global file. Filter
// drivers cannot be switched off as a whole: a restore writes no filter.*
// config (AllowedConfig), and a capture switches off by name each driver the
// repository's config defines (readConfig). They also stop git from
// writing split-index files next to the user's index and from starting
// background gc or maintenance.
var gitConfigArgs = []string{
	"-c", "core.quotePath=false",
	"-c", "core.hooksPath=/dev/null",
	"-c", "core.fsmonitor=false",
	"-c", "core.attributesFile=/dev/null",
	"-c", "core.sshCommand=ssh",
	"-c", "core.askPass=",
	"-c", "credential.helper=",
	"-c", "commit.gpgSign=false",
	"-c", "tag.gpgSign=false",
	"-c", "protocol.ext.allow=never",
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

// gitHome is git's HOME (and XDG_CONFIG_HOME): a path under which no file
// can exist, so git finds none of ~/.gitconfig, ~/.config/git/attributes
// and ignore, or ~/.ssh/config there (it takes ENOTDIR for a missing file),
// and nobody can put one there. Unlike a temporary directory, it leaves
// nothing behind when the process is killed.
const gitHome = "/dev/null"

// dropEnv are variables of the process environment git never sees besides
// every GIT_* one: tether may itself run under a git hook, whose GIT_DIR or
// GIT_INDEX_FILE would redirect us, and GIT_CONFIG_PARAMETERS, GIT_EXEC_PATH,
// GIT_SSH_COMMAND, GIT_ASKPASS or SSH_ASKPASS would name programs.
func dropEnv(kv string) bool {
	for _, p := range []string{"GIT_", "LC_", "LANG=", "HOME=", "XDG_CONFIG_HOME=", "SSH_ASKPASS", "EDITOR=", "VISUAL=", "PAGER="} {
		if strings.HasPrefix(kv, p) {
			return true
		}
	}
	return false
}

// baseEnv is the environment git runs with: the process environment minus
// dropEnv's variables, HOME an empty directory, global and system config
// disabled, prompts off, optional locks off and messages in English so
// errors can be matched.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !dropEnv(kv) {
			env = append(env, kv)
		}
	}
	return append(env,
		"HOME="+gitHome, "XDG_CONFIG_HOME="+gitHome,
		"LC_ALL=C", "LANG=C",
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_TERMINAL_PROMPT=0", "GIT_OPTIONAL_LOCKS=0",
		"GIT_ATTR_NOSYSTEM=1", "GIT_PAGER=cat", "GIT_EDITOR=false",
	)
}

// Command returns a git command for dir that runs with what every git
// command of gitstate runs with: an environment without the caller's GIT_*
// variables, HOME, askpass or editor, no system or global config, no
// prompts, and gitConfigArgs' -c overrides (no hooks, fsmonitor, askpass,
// credential helper, ssh command, signing, ext:: transport or global
// attributes) before args. env is added last and may set GIT_DIR and the
// like, or give a later git its own HOME. For other packages that run git
// (hydrate's clone): a -c credential.helper=... in args comes after the
// override that empties the list, so it is the only helper. The caller
// sets Stdin, Stdout and Stderr.
func Command(ctx context.Context, dir string, env []string, args ...string) *exec.Cmd {
	full := append(append([]string{}, gitConfigArgs...), args...)
	c := exec.CommandContext(ctx, "git", full...)
	c.Dir = dir
	c.Env = append(baseEnv(), env...)
	return c
}

// traceGit prints every git command and its duration to stderr, for
// finding where a slow capture spends its time.
var traceGit = os.Getenv("TETHER_GITSTATE_TRACE") != ""

// gitCmd runs git with a fixed environment.
type gitCmd struct {
	dir string   // working directory
	env []string // extra environment (GIT_DIR, GIT_INDEX_FILE, ...)
	// config is passed as GIT_CONFIG_KEY_n/GIT_CONFIG_VALUE_n, which, unlike
	// -c, takes any subsection (a filter driver named "a=b").
	config [][2]string
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
	env := g.env
	if len(g.config) > 0 {
		env = append(append([]string{}, g.env...), fmt.Sprintf("GIT_CONFIG_COUNT=%d", len(g.config)))
		for i, kv := range g.config {
			env = append(env, fmt.Sprintf("GIT_CONFIG_KEY_%d=%s", i, kv[0]), fmt.Sprintf("GIT_CONFIG_VALUE_%d=%s", i, kv[1]))
		}
	}
	c := Command(ctx, g.dir, env, args...)
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
	return gitCmd{dir: g.dir, env: append(append([]string{}, g.env...), env...), config: g.config}
}

// withConfig returns g with config entries added.
func (g gitCmd) withConfig(kv ...[2]string) gitCmd {
	return gitCmd{dir: g.dir, env: g.env, config: append(append([][2]string{}, g.config...), kv...)}
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
