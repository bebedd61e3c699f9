// Command tether-operator is the Kubernetes operator that reconciles
// AgenticSession objects into session pods. It is a binary of its own so that
// tether, which runs in every session pod, carries none of client-go and
// controller-runtime; `tether operator ...` execs it.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=...", like tether's.
var version = "dev"

const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// usageError marks an error as the caller's mistake (bad flag, bad value): exit 2.
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
	fmt.Fprintln(os.Stderr, "tether-operator:", err)
	if isUsage(err) {
		return exitUsage
	}
	return exitError
}

// isUsage reports whether err is the caller's mistake: ours (usageError) or
// cobra's own for a bad flag or argument.
func isUsage(err error) bool {
	var ue usageError
	if errors.As(err, &ue) {
		return true
	}
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "required flag") || strings.HasPrefix(msg, "invalid argument")
}
