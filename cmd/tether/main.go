// Command tether keeps long-running AI coding-agent sessions alive across
// container OOM kills, node loss and restarts. Each role is a subcommand; this
// package only wires flags to the internal packages.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Exit codes shared by every subcommand.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// usageError marks an error as the caller's mistake (bad flag, bad name): exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cmd := newRootCmd()
	cmd.SetArgs(args)
	err := cmd.Execute()
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(os.Stderr, "tether:", err)
	var ue usageError
	if asUsage(err, &ue) {
		return exitUsage
	}
	return exitError
}

// asUsage reports whether err is the caller's mistake: ours (usageError) or
// cobra's own for an unknown command or a missing required flag.
func asUsage(err error, ue *usageError) bool {
	if errors.As(err, ue) {
		return true
	}
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "required flag") || strings.HasPrefix(msg, "invalid argument")
}
