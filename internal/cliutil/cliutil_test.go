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
