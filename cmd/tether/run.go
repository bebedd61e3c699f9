package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/tether-dev/tether/internal/local"
	"github.com/tether-dev/tether/internal/snapshot"
	"github.com/tether-dev/tether/internal/statesync"

	"github.com/tether-dev/tether/internal/cliutil"
)

// claudeInstallHint is printed when the agent CLI is missing.
const claudeInstallHint = "install it with `npm install -g @anthropic-ai/claude-code@2.1.328` (or `make claude-cli` in a tether checkout, which puts it under ~/.cache/tether/npm), or pass --agent-cmd PATH"

// runFlags are `tether run`'s flags as typed.
type runFlags struct {
	sf          sessionFlags
	workspace   string
	prompt      string
	ui          string
	promptFile  string
	repos       []string
	memoryLimit string
	memoryMax   string
	oomBump     float64
	maxRestarts int
	agentCmd    string
	listen      string
	memoryMode  string
	logDir      string
	keepIgnored int64
	keepSetuid  bool
	envErr      error // a bad TETHER_KEEP_IGNORED
}

// runSession runs what `tether run` configured (tests look at cfg instead).
var runSession = runSupervisor

func newRunCmd() *cobra.Command {
	var f runFlags
	c := &cobra.Command{
		Use:   "run",
		Short: "Run an agent session on this machine, crash-proof: memory-limited runner, continuous snapshots, automatic resume",
		Long: `run restores the session's workspace (or starts it fresh), then runs the sync
and the runner as child processes. The runner, its agent CLI and every tool it
starts share one memory limit, enforced by a memory cgroup like a container's
(or by an RSS watchdog where no cgroup is writable, announced at start). When
the runner dies (out of memory, killed, crashed) the death is classified and
recorded in .tether/supervisor.json, the sync snapshots at once, and the
runner comes back with backoff and resumes the same agent session.

With --prompt and no terminal, run exits once the agent has finished the
prompt and the final snapshot is done. Ctrl-C stops gracefully (the runner,
then a final snapshot); a second Ctrl-C forces. Running it again on the same
workspace and session continues the conversation.`,
		Example: `  tether run --workspace ~/work/s1 --prompt "add a --verbose flag to the CLI" --memory-limit 4G
  tether run --workspace ./ws --repo https://github.com/me/app.git#main --oom-bump 1.5 --memory-max 8G`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := f.config(c)
			if err != nil {
				return err
			}
			return runSession(cfg)
		},
	}
	f.sf.register(c)
	c.Flags().StringVar(&f.workspace, "workspace", envOr("TETHER_WORKSPACE", ""), "workspace directory of the session (required; env TETHER_WORKSPACE)")
	c.Flags().StringVar(&f.prompt, "prompt", "", "initial prompt, sent once in the life of the session")
	c.Flags().StringVar(&f.promptFile, "prompt-file", "", "read the initial prompt from this file")
	c.Flags().StringArrayVar(&f.repos, "repo", nil, "repository to clone into repos/<name> when absent, URL[#branch], repeatable; a token goes in TETHER_GIT_TOKEN or TETHER_GIT_TOKEN_FILE, never in the URL")
	c.Flags().StringVar(&f.memoryLimit, "memory-limit", "4G", "memory limit of the runner with its agent CLI and tools, e.g. 512M, 4G")
	c.Flags().StringVar(&f.memoryMax, "memory-max", "", "ceiling for --oom-bump")
	c.Flags().Float64Var(&f.oomBump, "oom-bump", 0, "multiply the memory limit by this factor at every OOM restart (e.g. 1.5), up to --memory-max")
	c.Flags().IntVar(&f.maxRestarts, "max-restarts", 10, "give up after this many runner restarts")
	c.Flags().StringVar(&f.agentCmd, "agent-cmd", envOr("TETHER_AGENT_CMD", "claude"), "the agent CLI: a name on PATH or a path (env TETHER_AGENT_CMD)")
	c.Flags().StringVar(&f.ui, "ui", envOr("TETHER_UI", ""), "serve the web page (the session, its conversation live, a box to send messages, its deaths and recoveries) on this address, e.g. 127.0.0.1:8090 (env TETHER_UI); off loopback it needs TETHER_UI_TOKEN, which the page then asks for once as ?token=")
	c.Flags().StringVar(&f.listen, "listen", "", "address for the runner's HTTP API (AG-UI; `tether send` talks to it), e.g. 127.0.0.1:8080 (default: off, or a private loopback port when messages are typed on a terminal)")
	c.Flags().StringVar(&f.memoryMode, "memory-enforcement", local.MemoryAuto, "auto (a memory cgroup when writable, else the RSS watchdog), cgroup (fail without one) or watchdog")
	keepIgnoredVar(c, &f.keepIgnored, &f.envErr)
	c.Flags().BoolVar(&f.keepSetuid, "keep-setuid", false, keepSetuidUsage)
	c.Flags().StringVar(&f.logDir, "log-dir", "", "where the runner's and the sync's logs go (default: ~/.cache/tether/run/<namespace>/<session>)")
	return c
}

// config validates every flag before anything touches the workspace or the
// store: a mistake is a one-line error and exit 2 (or 1 for the machine's
// state: a missing agent CLI, an unwritable workspace).
func (f *runFlags) config(c *cobra.Command) (local.Config, error) {
	var cfg local.Config
	if f.envErr != nil {
		return cfg, f.envErr
	}
	if f.workspace == "" {
		return cfg, usagef("--workspace is required")
	}
	ws, err := filepath.Abs(f.workspace)
	if err != nil {
		return cfg, usagef("--workspace %s: %v", f.workspace, err)
	}
	limit, err := local.ParseSize(f.memoryLimit)
	if err != nil {
		return cfg, usagef("--memory-limit: %v", err)
	}
	var maxLimit int64
	if f.memoryMax != "" {
		if maxLimit, err = local.ParseSize(f.memoryMax); err != nil {
			return cfg, usagef("--memory-max: %v", err)
		}
	}
	switch {
	case c.Flags().Changed("oom-bump") && f.oomBump <= 1:
		return cfg, usagef("--oom-bump must be more than 1 (e.g. 1.5), got %g", f.oomBump)
	case f.oomBump > 1 && f.memoryMax == "":
		return cfg, usagef("--oom-bump needs --memory-max, the ceiling the limit may grow to")
	case f.memoryMax != "" && f.oomBump == 0:
		return cfg, usagef("--memory-max only makes sense with --oom-bump")
	case f.oomBump > 1 && maxLimit < limit:
		return cfg, usagef("--memory-max (%s) is below --memory-limit (%s)", f.memoryMax, f.memoryLimit)
	case f.maxRestarts < 0:
		return cfg, usagef("--max-restarts must be 0 or more, got %d", f.maxRestarts)
	}
	switch f.memoryMode {
	case local.MemoryAuto, local.MemoryCgroup, local.MemoryWatchdog:
	default:
		return cfg, usagef("--memory-enforcement %q: use auto, cgroup or watchdog", f.memoryMode)
	}
	if f.ui != "" {
		host, _, err := net.SplitHostPort(f.ui)
		if err != nil {
			return cfg, usagef("--ui %q: want host:port, e.g. 127.0.0.1:8090: %v", f.ui, err)
		}
		if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && host != "localhost" && os.Getenv("TETHER_UI_TOKEN") == "" {
			return cfg, usagef("--ui %s is reachable from other machines: set TETHER_UI_TOKEN (a long random string) so that the page asks for it, or serve it on 127.0.0.1", f.ui)
		}
	}
	prompt := f.prompt
	if f.promptFile != "" {
		if f.prompt != "" {
			return cfg, usagef("--prompt and --prompt-file are exclusive")
		}
		b, err := os.ReadFile(f.promptFile)
		if err != nil {
			return cfg, usagef("--prompt-file: %v", err)
		}
		prompt = string(b)
	}
	if f.sf.session == "" {
		f.sf.session = sessionFromWorkspace(ws)
	}
	if err := snapshot.ValidateName("namespace", f.sf.namespace); err != nil {
		return cfg, cliutil.Usage(err)
	}
	if err := snapshot.ValidateName("session", f.sf.session); err != nil {
		return cfg, cliutil.Usage(err)
	}
	var repos []statesync.RepoSpec
	for _, r := range f.repos {
		s, err := statesync.ParseRepoSpec(r)
		if err != nil {
			return cfg, cliutil.Usage(err)
		}
		repos = append(repos, s)
	}
	agent, err := exec.LookPath(f.agentCmd)
	if err != nil {
		return cfg, fmt.Errorf("the agent CLI %q was not found (%v); %s", f.agentCmd, errors.Unwrap(err), claudeInstallHint)
	}
	if agent, err = filepath.Abs(agent); err != nil {
		return cfg, err
	}
	if err := checkWritable(ws); err != nil {
		return cfg, err
	}
	logDir := f.logDir
	if logDir == "" {
		logDir = filepath.Join(defaultCacheDir(), "run", f.sf.namespace, f.sf.session)
	}
	cfg = local.Config{
		Workspace: ws, Namespace: f.sf.namespace, Session: f.sf.session, StoreURL: f.sf.store, Repos: repos,
		RunnerArgs: []string{"--claude-bin", agent}, Prompt: prompt, Listen: f.listen, MemoryLimit: limit, OOMBump: f.oomBump, MemoryMax: maxLimit,
		MemoryMode: f.memoryMode, MaxRestarts: f.maxRestarts, LogDir: logDir, Out: c.OutOrStdout(),
		// The sync child saves with this run's budget, whatever its own
		// environment says.
		SyncArgs:   []string{"--keep-ignored", strconv.FormatInt(f.keepIgnored, 10)},
		KeepSetuid: f.keepSetuid,
		// Without a terminal or the page nobody can type the next
		// message: finish the prompt and exit.
		ExitWhenIdle: prompt != "" && !isTerminal(os.Stdin) && f.ui == "",
		UI:           f.ui, UIToken: os.Getenv("TETHER_UI_TOKEN"),
	}
	if isTerminal(os.Stdin) {
		cfg.Input = os.Stdin
	}
	return cfg, nil
}

// checkWritable creates the workspace if needed and proves it is writable,
// without leaving anything behind.
func checkWritable(ws string) error {
	if err := os.MkdirAll(ws, 0o755); err != nil {
		return fmt.Errorf("workspace %s cannot be created: %v", ws, errors.Unwrap(err))
	}
	f, err := os.CreateTemp(ws, ".tether-write-test-*")
	if err != nil {
		return fmt.Errorf("workspace %s is not writable: %v", ws, errors.Unwrap(err))
	}
	f.Close()
	return os.Remove(f.Name())
}

var nonLabel = regexp.MustCompile(`[^a-z0-9-]+`)

// sessionFromWorkspace derives a session name from the workspace path: its
// base name made a DNS-1123 label, plus a hash of the whole path so two
// workspaces named alike never share a session.
func sessionFromWorkspace(ws string) string {
	base := strings.Trim(nonLabel.ReplaceAllString(strings.ToLower(filepath.Base(ws)), "-"), "-")
	if len(base) > 40 {
		base = strings.Trim(base[:40], "-")
	}
	h := sha256.Sum256([]byte(ws))
	if base == "" {
		base = "ws"
	}
	return base + "-" + hex.EncodeToString(h[:4])
}

// isTerminal: a character device is not enough (/dev/null is one); ask
// the tty driver.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// runSupervisor runs cfg until the session ends: the first SIGINT/SIGTERM
// stops gracefully, the second forces.
func runSupervisor(cfg local.Config) error {
	sup, err := local.New(cfg)
	if err != nil {
		return cliutil.Usage(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A terminal that goes away (ssh drops: SIGHUP, then EPIPE on every
	// write) must not kill the supervisor before it has stopped the runner
	// and taken the final snapshot.
	signal.Ignore(syscall.SIGPIPE)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		var first time.Time
		for range sigs {
			switch {
			case first.IsZero():
				first = time.Now()
				fmt.Fprintln(cfg.Out, "\ntether: stopping gracefully: the runner, then a final snapshot (Ctrl-C again to force)")
				cancel()
			case time.Since(first) < 100*time.Millisecond:
				// One stop sent twice (e.g. to the process and to its
				// process group, as timeout(1) does), not a second Ctrl-C.
			default:
				fmt.Fprintln(cfg.Out, "\ntether: forcing: killing the runner and the sync")
				sup.Force()
			}
		}
	}()
	return sup.Run(ctx)
}
