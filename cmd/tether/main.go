// Command tether keeps long-running AI coding-agent sessions alive across
// container OOM kills, node loss and restarts. Each role is a subcommand; this
// package only wires flags to the internal packages.
package main

import (
	"os"

	"github.com/tether-dev/tether/internal/cliutil"
)

// Exit codes shared by every subcommand.
const (
	exitOK    = cliutil.ExitOK
	exitError = cliutil.ExitError
	exitUsage = cliutil.ExitUsage
)

func usagef(format string, args ...any) error { return cliutil.Usagef(format, args...) }

func main() {
	os.Exit(cliutil.Run("tether", newRootCmd(), os.Args[1:], os.Stderr))
}
