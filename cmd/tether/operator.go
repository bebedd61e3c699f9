package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tether-dev/tether/internal/fsutil"
)

// operatorBinary is the operator's own executable (cmd/tether-operator). It
// is separate because client-go and controller-runtime would otherwise sit in
// the memory of every session pod's sync sidecar, which runs this binary.
const operatorBinary = "tether-operator"

// newOperatorCmd keeps `tether operator ...` working: it replaces this
// process with tether-operator, so flags, help, signals and the exit code are
// the operator's own.
func newOperatorCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "operator [flags]",
		Short: "Run the Kubernetes operator that keeps AgenticSessions alive (runs " + operatorBinary + ")",
		Long: `operator runs ` + operatorBinary + `, the Kubernetes operator, with the same
arguments: it is a separate binary so this one stays small in every session
pod. It is looked up next to this executable first, then on $PATH.
` + "`tether operator --help`" + ` shows the operator's flags.`,
		DisableFlagParsing: true,
		RunE: func(c *cobra.Command, args []string) error {
			self, err := os.Executable()
			if err != nil {
				self = ""
			}
			path, err := findOperator(self, exec.LookPath)
			if err != nil {
				return err
			}
			argv := append([]string{path}, args...)
			if err := syscall.Exec(path, argv, os.Environ()); err != nil {
				return fmt.Errorf("operator: run %s: %w", path, err)
			}
			return nil // not reached: Exec replaced this process
		},
	}
}

// findOperator returns tether-operator from self's directory (the image and
// `make build` put the two binaries side by side), else from $PATH. The error
// is one line naming both places and how to get the binary.
func findOperator(self string, lookPath func(string) (string, error)) (string, error) {
	where := "on $PATH"
	if self != "" {
		p := filepath.Join(filepath.Dir(self), operatorBinary)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
		where = "at " + p + " (next to tether) nor on $PATH"
	}
	p, err := lookPath(operatorBinary)
	if err == nil {
		return p, nil
	}
	if errors.Is(err, exec.ErrDot) {
		// Go refuses a $PATH entry relative to the current directory.
		where += " (a relative $PATH entry is not trusted)"
	}
	return "", fmt.Errorf("operator: %s is a separate binary and was not found %s; "+
		"`make build` builds bin/%s next to bin/tether (or `go build -o DIR ./cmd/%s`), and the tether image ships both",
		operatorBinary, where, operatorBinary, operatorBinary)
}

// newCopySelfCmd is the session pod's install step: the init container runs
// it from the tether image to put this binary on a volume the user's agent
// image mounts. It belongs to tether, not tether-operator: the copy is the
// binary that runs it.
func newCopySelfCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "copy-self DEST",
		Short:  "Copy this tether binary to DEST (the session pod's install step)",
		Hidden: true,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("copy-self takes exactly one argument, the destination path")
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			return fsutil.CopySelf(args[0])
		},
	}
}
