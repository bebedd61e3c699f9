// Package cliutil holds what the tether and tether-operator commands share:
// exit codes, and telling a caller's mistake (exit 2) from a failure (exit 1).
package cliutil

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tether-dev/tether/internal/redact"
)

// Exit codes of every command.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2 // bad flag, argument or name
	// ExitFenced: a newer writer took the session over (snapshot.FencedError);
	// restarting the process cannot help, so supervisors tell it apart.
	ExitFenced = 3
)

// UsageError marks an error as the caller's mistake: exit 2.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// Usage marks err as the caller's mistake.
func Usage(err error) error { return UsageError{Err: err} }

// Usagef is Usage(fmt.Errorf(format, args...)).
func Usagef(format string, args ...any) error { return Usage(fmt.Errorf(format, args...)) }

// IsUsage reports whether err is the caller's mistake: a UsageError, or
// cobra's own error for an unknown command, a missing required flag or an
// invalid argument.
func IsUsage(err error) bool {
	var ue UsageError
	if errors.As(err, &ue) {
		return true
	}
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "required flag") || strings.HasPrefix(msg, "invalid argument")
}

// ExitCode is the exit code for the error a command returned.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case IsUsage(err):
		return ExitUsage
	}
	// An interface, not the type: the operator binary links this package.
	var f interface{ Fenced() bool }
	if errors.As(err, &f) && f.Fenced() {
		return ExitFenced
	}
	return ExitError
}

// Run executes root with args, prints an error as one line "name: error" to
// stderr, redacted (internal/redact), and returns the exit code. Flag errors
// count as usage errors.
func Run(name string, root *cobra.Command, args []string, stderr io.Writer) int {
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return Usage(err) })
	root.SetArgs(args)
	err := root.Execute()
	if err != nil {
		fmt.Fprintln(stderr, name+":", redact.String(err.Error()))
	}
	return ExitCode(err)
}
