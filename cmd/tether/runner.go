package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tether-dev/tether/internal/runner"

	"github.com/tether-dev/tether/internal/cliutil"
)

func newRunnerCmd() *cobra.Command {
	var (
		cfg          runner.Config
		allowedTools string
		promptFile   string
		listen       string
		tokenFile    string
		httpOpts     runner.HTTPOptions
	)
	c := &cobra.Command{
		Use:   "runner --workspace DIR [flags] [-- AGENT-COMMAND [ARGS...]]",
		Short: "Drive the agent CLI for a session: save its session id at birth, resume after a crash, serve AG-UI",
		Long: `runner runs one long-lived Claude Code CLI process in stream-json mode for a
thread of the session in --workspace. The moment the CLI announces its session
id, the id is written atomically to .tether/session-ids.json and the sync side is
asked for a snapshot (.tether/snapshot-request). On start it resumes the known
session (repairing a transcript a crash left torn) and reports whether that
worked in .tether/runner-status.json, the event log and the log; when it did not,
a fresh session starts with a recap of the conversation.

Every event goes to the durable log .tether/events.jsonl. With --listen, the
runner serves AG-UI over SSE (POST /agui, GET /agui/events with Last-Event-ID),
/status, /healthz, /readyz and /metrics. Every endpoint but the probes requires
the token (TETHER_RUNNER_TOKEN or --token-file) as "Authorization: Bearer", and
the runner refuses to listen on anything but loopback without one. Streams are
capped (--max-streams, then 503), a client that takes nothing for
--stall-timeout is disconnected and resumes with Last-Event-ID, and bodies over
--max-request-bytes get 413. SIGTERM: no new messages, the CLI finishes its
turn and exits within --stop-timeout.

Arguments after "--" name the agent command: the first is the CLI executable
(instead of --claude-bin) and the rest are passed to it; when the first starts
with "-", all are arguments for the default CLI.`,
		RunE: func(c *cobra.Command, args []string) error {
			if cfg.Workspace == "" {
				return usagef("--workspace is required")
			}
			if len(args) > 0 {
				if !strings.HasPrefix(args[0], "-") {
					cfg.ClaudeBin, args = args[0], args[1:]
				}
				cfg.ExtraArgs = append(cfg.ExtraArgs, args...)
			}
			switch allowedTools {
			case "none":
				cfg.AllowedTools = []string{}
			case "":
			default:
				cfg.AllowedTools = strings.Split(allowedTools, ",")
			}
			if promptFile != "" {
				if cfg.InitialPrompt != "" {
					return usagef("give --prompt or --prompt-file, not both")
				}
				b, err := os.ReadFile(promptFile)
				if err != nil {
					return usagef("--prompt-file: %v", err)
				}
				cfg.InitialPrompt = string(b)
			}
			token, err := runnerToken(tokenFile)
			if err != nil {
				return err
			}
			httpOpts.Token = token
			cfg.Logger = newLogger(os.Stderr).With("component", "runner")
			return runRunner(cfg, listen, httpOpts)
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.Workspace, "workspace", envOr("TETHER_WORKSPACE", ""), "the session's workspace directory (env TETHER_WORKSPACE)")
	f.StringVar(&cfg.Cwd, "cwd", "", "directory the CLI runs in (default: the workspace); must stay the same across restarts, resume depends on it")
	f.StringVar(&cfg.Thread, "thread", "main", "name of the conversation in session-ids.json")
	f.StringVar(&cfg.ClaudeBin, "claude-bin", envOr("TETHER_CLAUDE_BIN", "claude"), "the Claude Code CLI executable (env TETHER_CLAUDE_BIN)")
	f.StringVar(&allowedTools, "allowed-tools", "", "comma-separated --allowedTools for the CLI, or \"none\" (default: "+strings.Join(runner.DefaultAllowedTools, ",")+"); as root the CLI refuses --dangerously-skip-permissions")
	f.StringVar(&cfg.PermissionMode, "permission-mode", "", "--permission-mode for the CLI (default: the CLI's)")
	f.StringArrayVar(&cfg.ExtraArgs, "claude-arg", nil, "extra argument for the CLI (repeatable)")
	f.BoolVar(&cfg.Telemetry, "telemetry", false, "leave the CLI's telemetry and error reporting on")
	f.StringVar(&cfg.InitialPrompt, "prompt", os.Getenv("TETHER_INITIAL_PROMPT"), "initial prompt, delivered once in the life of the session across restarts (env TETHER_INITIAL_PROMPT)")
	f.StringVar(&promptFile, "prompt-file", "", "read the initial prompt from this file")
	f.StringVar(&cfg.InterruptNotice, "interrupt-notice", runner.DefaultInterruptNotice, "message sent to the agent after a resume when a crash cut its previous turn short")
	f.BoolVar(&cfg.NoInterruptNotice, "no-interrupt-notice", false, "do not send the interrupted-turn notice")
	f.StringVar(&listen, "listen", "", "address of the HTTP API (AG-UI, probes, metrics), e.g. :8080 (empty: off)")
	f.StringVar(&tokenFile, "token-file", envOr("TETHER_RUNNER_TOKEN_FILE", ""), "file holding the bearer token every endpoint but /healthz and /readyz requires (env TETHER_RUNNER_TOKEN_FILE; or the token itself in env TETHER_RUNNER_TOKEN); required unless --listen is a loopback address")
	f.IntVar(&httpOpts.MaxStreams, "max-streams", envInt("TETHER_RUNNER_MAX_STREAMS", runner.DefaultMaxStreams), "AG-UI event streams served at once; one more gets 503 with Retry-After (env TETHER_RUNNER_MAX_STREAMS)")
	f.Int64Var(&httpOpts.MaxBodyBytes, "max-request-bytes", runner.DefaultMaxBodyBytes, "largest request body taken; a larger one gets 413")
	f.DurationVar(&httpOpts.StallTimeout, "stall-timeout", envDuration("TETHER_RUNNER_STALL_TIMEOUT", runner.DefaultStallTimeout), "an AG-UI client that takes no bytes for this long is disconnected; it reconnects with Last-Event-ID (env TETHER_RUNNER_STALL_TIMEOUT)")
	f.DurationVar(&cfg.StartTimeout, "start-timeout", 60*time.Second, "how long the CLI may take to start")
	f.DurationVar(&cfg.TurnStartTimeout, "turn-start-timeout", 120*time.Second, "how long the CLI may stay silent after a message is sent to it")
	f.DurationVar(&cfg.StopTimeout, "stop-timeout", 12*time.Second, "on SIGTERM, how long the CLI gets to finish its turn and exit (the operator budgets 15s for the whole runner stop)")
	return c
}

// runnerToken reads the API token from the file named by --token-file, else
// from TETHER_RUNNER_TOKEN; never from a flag's value, which ps shows.
func runnerToken(tokenFile string) (string, error) {
	if tokenFile == "" {
		return strings.TrimSpace(os.Getenv("TETHER_RUNNER_TOKEN")), nil
	}
	b, err := os.ReadFile(tokenFile)
	if err != nil {
		return "", usagef("--token-file: %v", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", usagef("--token-file %s is empty; put the runner's token in it", tokenFile)
	}
	return token, nil
}

func runRunner(cfg runner.Config, listen string, httpOpts runner.HTTPOptions) error {
	r, err := runner.New(cfg)
	if err != nil {
		return cliutil.Usage(err)
	}
	if err := r.Open(); err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	var srv *http.Server
	if listen != "" {
		ln, err := runner.Listen(listen, httpOpts.Token)
		if errors.Is(err, runner.ErrNoToken) {
			return cliutil.Usage(err)
		}
		if err != nil {
			return err
		}
		srv = runner.NewServer(r, httpOpts)
		go srv.Serve(ln)
		cfg.Logger.Info("serving AG-UI", "addr", ln.Addr().String(), "auth", httpOpts.Token != "", "max_streams", httpOpts.MaxStreams)
	}
	runErr := r.Run(ctx)
	if srv != nil {
		// Streams end by themselves once the runner is done; give
		// clients a moment to read the last events.
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			cfg.Logger.Warn("HTTP shutdown", "err", err)
		}
		cancel()
	}
	return runErr
}

// envInt is the integer in environment variable name, or def when it is
// unset or not a number.
func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return n
	}
	return def
}

// envDuration is the duration in environment variable name, or def.
func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return d
	}
	return def
}
