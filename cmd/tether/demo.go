package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/tether-dev/tether/internal/local"
	"github.com/tether-dev/tether/internal/local/demo"
	"github.com/tether-dev/tether/internal/snapshot"
	"github.com/tether-dev/tether/internal/store"

	"github.com/tether-dev/tether/internal/cliutil"
)

func newDemoCmd() *cobra.Command {
	var (
		sf          sessionFlags
		workspace   string
		fresh       bool
		memoryLimit string
		memoryMode  string
		hogMiB      int
	)
	c := &cobra.Command{
		Use:   "demo",
		Short: "Watch a real agent session survive a real kernel OOM kill, resumed with nothing lost",
		Long: `demo runs the real Claude Code CLI (installed from npm into ~/.cache/tether when
missing) against a scripted model on 127.0.0.1, under ` + "`tether run`" + `'s supervisor.
The agent builds a small project in a git repository (commits, staged,
unstaged and untracked changes, a binary file), then runs a command that needs
more memory than the runner's limit. The kernel kills it in the middle of the
turn; tether notices, kills the rest of the group, snapshots, restarts the
runner, which resumes the same session, and the agent finishes. The report at
the end says what was measured and checked.

--fresh-workspace also wipes the local workspace after the kill, so that
everything comes back from the store alone.`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			limit, err := local.ParseSize(memoryLimit)
			if err != nil {
				return usagef("--memory-limit: %v", err)
			}
			if sf.session == "" {
				// A session of its own per run: never a user's, never an
				// earlier demo's snapshots restored into this one.
				sf.session = "tether-demo-" + strconv.FormatInt(time.Now().Unix(), 36)
			}
			if err := snapshot.ValidateName("session", sf.session); err != nil {
				return cliutil.Usage(err)
			}
			if err := snapshot.ValidateName("namespace", sf.namespace); err != nil {
				return cliutil.Usage(err)
			}
			cache := os.Getenv("CACHE")
			if cache == "" {
				cache = defaultCacheDir()
			}
			if workspace == "" {
				workspace = filepath.Join(cache, "demo", "workspace")
			}
			ws, err := filepath.Abs(workspace)
			if err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			out := c.OutOrStdout()
			claude, err := demo.ClaudeBin(cache, c.ErrOrStderr())
			if err != nil {
				return err
			}
			if sf.store == "" {
				sf.store = store.DefaultURL()
			}
			fmt.Fprintf(out, "tether-demo: session %s/%s, workspace %s, store %s, Claude Code CLI %s\n", sf.namespace, sf.session, ws, sf.store, claude)
			rep, err := demo.Run(c.Context(), demo.Options{
				Tether: self, ClaudeBin: claude, Workspace: ws, StoreURL: sf.store, Namespace: sf.namespace, Session: sf.session,
				Fresh: fresh, MemoryLimit: limit, HogMiB: hogMiB, MemoryMode: memoryMode,
				LogDir: filepath.Join(cache, "demo", "logs", sf.session),
				Out:    out,
			})
			if rep != nil {
				rep.Print(out)
			}
			return err
		},
	}
	sf.register(c)
	c.Flags().StringVar(&workspace, "workspace", "", "demo workspace, wiped at start (default ~/.cache/tether/demo/workspace)")
	c.Flags().BoolVar(&fresh, "fresh-workspace", false, "after the OOM kill, wipe the local workspace and restore it from the store")
	c.Flags().StringVar(&memoryLimit, "memory-limit", "1G", "the runner's memory limit")
	c.Flags().StringVar(&memoryMode, "memory-enforcement", local.MemoryAuto, "auto, cgroup or watchdog (see tether run)")
	c.Flags().IntVar(&hogMiB, "hog-mib", 8192, "how much memory the agent's load test tries to take (MiB)")
	c.AddCommand(newDemoHogCmd())
	return c
}

// newDemoHogCmd is the demo's memory-hungry command, run by the agent's Bash
// tool: a self-contained way to exceed a limit on any machine.
func newDemoHogCmd() *cobra.Command {
	var mib int
	c := &cobra.Command{
		Use:    "hog",
		Short:  "Allocate memory until --mib MiB are held (the demo's load test)",
		Hidden: true,
		Args:   noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			demo.Hog(c.OutOrStdout(), mib)
			return nil
		},
	}
	c.Flags().IntVar(&mib, "mib", 8192, "MiB to allocate")
	return c
}
