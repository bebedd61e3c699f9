package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tether-dev/tether/internal/local"
	"github.com/tether-dev/tether/internal/redact"
	"github.com/tether-dev/tether/internal/snapshot"
	"github.com/tether-dev/tether/internal/statesync"

	"github.com/tether-dev/tether/internal/cliutil"
)

// durationVar registers a duration flag whose default may come from an
// environment variable. A bad environment value is reported at start,
// naming the variable.
func durationVar(c *cobra.Command, p *time.Duration, name, env string, def time.Duration, usage string, bad *error) {
	if v := os.Getenv(env); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil && *bad == nil {
			*bad = usagef("environment variable %s=%q (for --%s) is not a duration such as 500ms or 30s", env, v, name)
		}
		def = d
	}
	c.Flags().DurationVar(p, name, def, usage+" (env "+env+")")
}

// sizeFlag is a byte size flag that also takes 0 (none).
type sizeFlag struct{ n *int64 }

func (f sizeFlag) String() string {
	if f.n == nil || *f.n == 0 {
		return "0"
	}
	return strings.ReplaceAll(local.FormatSize(*f.n), " ", "")
}

func (f sizeFlag) Set(v string) error {
	if t := strings.TrimSpace(v); t == "0" || strings.EqualFold(t, "none") {
		*f.n = 0
		return nil
	}
	n, err := local.ParseSize(v)
	if err != nil {
		return err
	}
	*f.n = n
	return nil
}

func (sizeFlag) Type() string { return "size" }

const keepIgnoredEnv = "TETHER_KEEP_IGNORED"

// keepIgnoredVar registers --keep-ignored, whose default is
// snapshot.DefaultKeepIgnored or $TETHER_KEEP_IGNORED. Every command that
// saves takes it: a save without it would drop from the newest snapshot
// the ignored files the earlier ones kept.
func keepIgnoredVar(c *cobra.Command, p *int64, bad *error) {
	*p = snapshot.DefaultKeepIgnored
	if v := os.Getenv(keepIgnoredEnv); v != "" {
		if err := (sizeFlag{p}).Set(v); err != nil && *bad == nil {
			*bad = usagef("environment variable %s=%q (for --keep-ignored): %v", keepIgnoredEnv, v, err)
		}
	}
	c.Flags().Var(sizeFlag{p}, "keep-ignored", "bytes of files that git ignores inside repositories (.env, local settings, build outputs) each snapshot keeps, smallest first; the rest are left out and listed, e.g. 256M (0: none; env "+keepIgnoredEnv+")")
}

func newSyncCmd() *cobra.Command {
	var (
		sf      sessionFlags
		cfg     = statesync.Defaults()
		listen  string
		envErr  error
		noDefEx bool
		maxSize string
		termLog string
	)
	c := &cobra.Command{
		Use:   "sync",
		Short: "Snapshot the workspace continuously; take a final snapshot on SIGTERM",
		Long: `sync takes a first snapshot at once, then one after every burst of changes
(file events, debounced), one whenever the runner asks (.tether/snapshot-request),
and rescans periodically as a safety net. On SIGTERM or SIGINT it takes a final
snapshot of everything within --final-budget and exits 0 if that completed.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if envErr != nil {
				return envErr
			}
			if noDefEx && !c.Flags().Changed("exclude") {
				cfg.Excludes = nil
			}
			if cfg.Workspace == "" {
				return usagef("--workspace is required")
			}
			if maxSize != "" {
				n, err := local.ParseSize(maxSize)
				if err != nil {
					return usagef("--max-size: %v", err)
				}
				cfg.MaxBytes = n
			}
			abs, err := filepath.Abs(cfg.Workspace)
			if err != nil {
				return err
			}
			cfg.Workspace = abs
			if err := cfg.Validate(); err != nil {
				return cliutil.Usage(err)
			}
			if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
				return usagef("--workspace %s is not a readable directory", abs)
			}
			return sf.with(func(ctx context.Context, repo *snapshot.Repo) error {
				return runSync(ctx, repo, cfg, sf, listen, termLog)
			})
		},
	}
	sf.register(c)
	c.Flags().StringVar(&cfg.Workspace, "workspace", envOr("TETHER_WORKSPACE", ""), "workspace directory (env TETHER_WORKSPACE)")
	durationVar(c, &cfg.Debounce, "debounce", "TETHER_SYNC_DEBOUNCE", cfg.Debounce, "quiet time after a change before a snapshot", &envErr)
	durationVar(c, &cfg.MaxDelay, "max-delay", "TETHER_SYNC_MAX_DELAY", cfg.MaxDelay, "longest a change waits for its snapshot while changes keep coming", &envErr)
	durationVar(c, &cfg.Rescan, "rescan", "TETHER_SYNC_RESCAN", cfg.Rescan, "period of the full rescan that catches what file events missed", &envErr)
	durationVar(c, &cfg.RepoInterval, "repo-interval", "TETHER_SYNC_REPO_INTERVAL", cfg.RepoInterval, "longest a git repository goes without a capture", &envErr)
	durationVar(c, &cfg.FinalBudget, "final-budget", "TETHER_SYNC_FINAL_BUDGET", cfg.FinalBudget, "time allowed for the final snapshot after SIGTERM", &envErr)
	c.Flags().IntVar(&cfg.Keep, "keep", cfg.Keep, "snapshots kept by retention (0: keep all)")
	c.Flags().StringVar(&cfg.CacheDir, "cache-dir", envOr("TETHER_CACHE_DIR", defaultCacheDir()), "stat cache and git object cache (env TETHER_CACHE_DIR)")
	c.Flags().StringArrayVar(&cfg.Excludes, "exclude", cfg.Excludes, "gitignore-style pattern anchored at the workspace root, repeatable; **/ matches at any depth; replaces the defaults")
	c.Flags().BoolVar(&noDefEx, "no-default-excludes", false, "save node_modules and the other default exclusions too")
	keepIgnoredVar(c, &cfg.KeepIgnored, &envErr)
	c.Flags().StringVar(&maxSize, "max-size", envOr("TETHER_SYNC_MAX_SIZE", ""), "cap on the bytes of files outside git repositories per snapshot, e.g. 5G; over it the largest files are left out and logged (env TETHER_SYNC_MAX_SIZE; empty: no cap)")
	c.Flags().StringVar(&listen, "listen", envOr("TETHER_SYNC_LISTEN", ""), "address for /metrics and /healthz, e.g. :9464 (env TETHER_SYNC_LISTEN; empty: off)")
	c.Flags().StringVar(&termLog, "termination-log", "", "when fenced, write a JSON record of who took the session over to this file (on Kubernetes /dev/termination-log, for the operator)")
	return c
}

func newHydrateCmd() *cobra.Command {
	var (
		sf        sessionFlags
		workspace string
		repos     []string
		asJSON    bool
		termLog   string
		keepSUID  bool
	)
	c := &cobra.Command{
		Use:   "hydrate",
		Short: "Restore the newest snapshot into the workspace, or start fresh; clone missing repos",
		Long: `hydrate runs before the agent. If the session has snapshots, the newest is
restored, and any failure stops here with a non-zero exit: a session never
starts empty over saved work. If it has none, the workspace starts fresh.
Repositories given with --repo are cloned into repos/<name> when absent.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if workspace == "" {
				return usagef("--workspace is required")
			}
			var specs []statesync.RepoSpec
			for _, r := range repos {
				s, err := statesync.ParseRepoSpec(r)
				if err != nil {
					return cliutil.Usage(err)
				}
				specs = append(specs, s)
			}
			return sf.with(func(ctx context.Context, repo *snapshot.Repo) error {
				res, err := statesync.HydrateWith(ctx, repo, workspace, statesync.HydrateOptions{Repos: specs, Progress: redact.Writer(c.ErrOrStderr()), KeepSetuid: keepSUID})
				if err != nil {
					return err
				}
				if termLog != "" {
					if err := writeTerminationLog(termLog, hydrateReport(res)); err != nil {
						// The workspace is hydrated; only the report is lost.
						fmt.Fprintf(c.ErrOrStderr(), "hydrate: WARNING: cannot write the report for the operator: %v\n", err)
					}
				}
				if asJSON {
					return printJSON(c.OutOrStdout(), res)
				}
				fmt.Fprintf(c.OutOrStdout(), "hydrate: %s\n", res.Outcome)
				return nil
			})
		},
	}
	sf.register(c)
	c.Flags().StringVar(&workspace, "workspace", envOr("TETHER_WORKSPACE", ""), "workspace directory (env TETHER_WORKSPACE)")
	c.Flags().StringArrayVar(&repos, "repo", nil, "repository to clone when absent, URL[#branch], repeatable; a token goes in TETHER_GIT_TOKEN or TETHER_GIT_TOKEN_FILE, never in the URL")
	c.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	c.Flags().BoolVar(&keepSUID, "keep-setuid", false, keepSetuidUsage)
	c.Flags().StringVar(&termLog, "termination-log", "", "also write a short JSON summary (outcome, snapshot, skipped snapshots, epoch; at most 4096 bytes) to this file (on Kubernetes /dev/termination-log, for the operator)")
	return c
}

// newLogger is the logger of tether's long-running commands: text lines on
// w, every message and attribute redacted, since logs are collected and
// read far from the pod.
func newLogger(w io.Writer) *slog.Logger {
	return slog.New(redact.Handler(slog.NewTextHandler(w, nil)))
}

// runSync runs the sync loop until ctx ends, serving metrics if asked.
func runSync(ctx context.Context, repo *snapshot.Repo, cfg statesync.Config, sf sessionFlags, listen, termLog string) error {
	log := newLogger(os.Stderr).With("session", sf.namespace+"/"+sf.session)
	s, err := statesync.New(cfg, repo, log)
	if err != nil {
		return err
	}
	defer s.Close()
	if listen != "" {
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			return usagef("--listen %s: %v", listen, err)
		}
		srv := &http.Server{Handler: s.Metrics.Handler(), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		log.Info("serving /metrics and /healthz", "addr", ln.Addr().String())
	}
	log.Info("sync started", "workspace", cfg.Workspace, "store", repo.Store().String())
	err = s.Run(ctx)
	var fe *snapshot.FencedError
	if termLog != "" && errors.As(err, &fe) {
		if werr := writeTerminationLog(termLog, fenceReport(fe, time.Now())); werr != nil {
			log.Warn("cannot write the fence record for the operator", "file", termLog, "err", werr)
		}
	}
	return err
}
