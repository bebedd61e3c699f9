package cliutil

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{errors.New("store unreachable"), ExitError},
		{Usagef("bad name %q", "X"), ExitUsage},
		{fmt.Errorf("sync: %w", Usage(errors.New("--debounce must be positive"))), ExitUsage},
		{errors.New(`unknown command "x" for "tether"`), ExitUsage},
	} {
		if got := ExitCode(tc.err); got != tc.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestRunPrintsOneLineAndMapsFlagErrors(t *testing.T) {
	cmd := &cobra.Command{Use: "x", SilenceUsage: true, SilenceErrors: true, RunE: func(*cobra.Command, []string) error { return errors.New("it broke") }}
	var errb bytes.Buffer
	if code := Run("x", cmd, []string{"--nope"}, &errb); code != ExitUsage || !strings.HasPrefix(errb.String(), "x: unknown flag: --nope") {
		t.Fatalf("bad flag: exit %d, %q", code, errb.String())
	}
	errb.Reset()
	if code := Run("x", cmd, nil, &errb); code != ExitError || errb.String() != "x: it broke\n" {
		t.Fatalf("failure: exit %d, %q", code, errb.String())
	}
}

// An error that quotes a credential (a git or HTTP message) is printed
// without it.
func TestRunRedactsTheErrorLine(t *testing.T) {
	const tok = "ghp_0123456789abcdefghijABCDEFGHIJ012345"
	cmd := &cobra.Command{Use: "x", SilenceUsage: true, SilenceErrors: true, RunE: func(*cobra.Command, []string) error {
		return fmt.Errorf("clone https://bot:%s@github.com/acme/app.git: exit status 128", tok)
	}}
	var errb bytes.Buffer
	if code := Run("x", cmd, nil, &errb); code != ExitError || strings.Contains(errb.String(), tok) ||
		errb.String() != "x: clone https://github.com/acme/app.git: exit status 128\n" {
		t.Fatalf("exit %d, %q", code, errb.String())
	}
}
