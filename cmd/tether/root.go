package main

import (
	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "tether",
		Short: "Keep AI coding-agent sessions alive across OOM kills and restarts, with nothing lost",
		Long: `tether snapshots an agent's workspace continuously to object storage, saves the
agent CLI's session id the moment it exists, notices a dead runner and brings
the session back, resumed.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newSnapshotCmd(), newSyncCmd(), newHydrateCmd(), newRunnerCmd(), newSendCmd(), newOperatorCmd(), newCopySelfCmd(), newRunCmd(), newDemoCmd())
	return root
}
