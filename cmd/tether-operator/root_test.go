package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tether-dev/tether/internal/cliutil"
)

// operatorCmd runs the command tree in-process, as run does, and returns its
// exit code and output.
func operatorCmd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	cmd := newRootCmd()
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	code := cliutil.Run("tether-operator", cmd, args, &errb)
	return code, out.String(), errb.String()
}

// Every bad setting is refused before any Kubernetes API is contacted, with
// exit 2 and a line naming the flag.
func TestOperatorUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-concurrent-reconciles", "0"}, "--max-concurrent-reconciles"},
		{[]string{"--tether-image", ""}, "--tether-image"},
		{[]string{"--tether-image-pull-policy", "Sometimes"}, "--tether-image-pull-policy"},
		{[]string{"--runner-port", "0"}, "--runner-port"},
		{[]string{"--observe-interval", "-1s"}, "--observe-interval"},
		{[]string{"--run-as-user", "0"}, "--run-as-user"},
		{[]string{"--watch-namespaces", "ok,Not_A_Namespace"}, "Not_A_Namespace"},
		{[]string{"--kubeconfig", "/nonexistent/kubeconfig"}, "--kubeconfig"},
		{[]string{"--no-such-flag"}, "unknown flag"},
		// The pod install step belongs to tether itself: the copy must be
		// the lean binary, never this one.
		{[]string{"copy-self", "/tmp/tether"}, "takes no arguments"},
	} {
		code, _, errs := operatorCmd(tc.args...)
		if code != cliutil.ExitUsage || !strings.Contains(errs, tc.want) || strings.Contains(strings.TrimSpace(errs), "\n") {
			t.Errorf("%q: exit %d, %q; want exit 2 and one line mentioning %q", tc.args, code, errs, tc.want)
		}
	}
}

func TestOperatorHelp(t *testing.T) {
	code, out, errs := operatorCmd("--help")
	for _, want := range []string{"tether-operator [flags]", "--leader-elect", "--tether-image", "--zap-log-level", "AgenticSession"} {
		if code != cliutil.ExitOK || !strings.Contains(out, want) {
			t.Errorf("--help: exit %d, stderr %q; output lacks %q:\n%s", code, errs, want, out)
		}
	}
}
