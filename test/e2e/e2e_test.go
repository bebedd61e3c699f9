package e2e

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/test/claudecli"
)

var tetherBin string

// TestMain builds the tether binary once (or takes $TETHER_BIN).
func TestMain(m *testing.M) {
	if p := os.Getenv("TETHER_BIN"); p != "" {
		tetherBin = p
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "tether-e2e-")
	if err != nil {
		panic(err)
	}
	tetherBin = filepath.Join(dir, "tether")
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	cmd := exec.Command("go", "build", "-o", tetherBin, "./cmd/tether")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		panic("build tether: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needCommand skips (fails in CI) when the binary lacks a subcommand: the
// command tree is wired separately from this package.
func needCommand(t *testing.T, name string) {
	t.Helper()
	out, err := exec.Command(tetherBin, name, "--help").CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("unknown command")) {
		msg := "tether " + name + " is not wired into the command tree (cmd/tether/root.go): " + strings.TrimSpace(string(out))
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

type result struct {
	code           int
	stdout, stderr string
}

func tether(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(tetherBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if os.Getenv("TETHER_E2E_VERBOSE") != "" {
		cmd.Stdout, cmd.Stderr = io.MultiWriter(&out, os.Stderr), io.MultiWriter(&errb, os.Stderr)
	}
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, out.String(), errb.String()}
}

// Bad input is refused with one line and exit 2 (the caller's mistake) or 1
// (the machine's state), before the store is touched.
func TestRunBadInput(t *testing.T) {
	needCommand(t, "run")
	tmp := t.TempDir()
	storeDir := filepath.Join(tmp, "store")
	file := filepath.Join(tmp, "a-file")
	os.WriteFile(file, []byte("x"), 0o644)
	ws := filepath.Join(tmp, "ws")
	agent := "/bin/true" // any executable passes the agent check
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"zero memory limit", []string{"--memory-limit", "0"}, 2, "--memory-limit"},
		{"unknown unit", []string{"--memory-limit", "4X"}, 2, "unknown unit"},
		{"not a size", []string{"--memory-limit", "lots"}, 2, "--memory-limit"},
		{"bump without max", []string{"--oom-bump", "1.5"}, 2, "--memory-max"},
		{"bump below one", []string{"--oom-bump", "0.5", "--memory-max", "8G"}, 2, "--oom-bump"},
		{"max below limit", []string{"--memory-limit", "4G", "--oom-bump", "2", "--memory-max", "1G"}, 2, "--memory-max"},
		{"bad session", []string{"--session", "Not_A_Label"}, 2, "session"},
		{"bad enforcement", []string{"--memory-enforcement", "magic"}, 2, "--memory-enforcement"},
		{"missing agent", []string{"--agent-cmd", filepath.Join(tmp, "no-such-claude")}, 1, "npm install -g @anthropic-ai/claude-code"},
		{"missing agent on PATH", []string{"--agent-cmd", "claude-does-not-exist"}, 1, "not found"},
		{"unwritable workspace", []string{"--workspace", filepath.Join(file, "ws")}, 1, "workspace"},
		{"page off loopback without a token", []string{"--ui", "0.0.0.0:8090"}, 2, "TETHER_UI_TOKEN"},
		{"page address without a port", []string{"--ui", "127.0.0.1"}, 2, "--ui"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"run", "--workspace", ws, "--store", "file://" + storeDir, "--agent-cmd", agent, "--prompt", "hi"}
			args = append(args, c.args...)
			r := tether(t, nil, args...)
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if r.code != c.code || len(lines) != 1 || !strings.Contains(r.stderr, c.want) {
				t.Errorf("exit %d (want %d), stderr %q (want one line containing %q)", r.code, c.code, r.stderr, c.want)
			}
			if _, err := os.Stat(storeDir); !os.IsNotExist(err) {
				t.Errorf("the store %s was touched: %v", storeDir, err)
			}
		})
	}
	r := tether(t, nil, "run", "--store", "file://"+storeDir)
	if r.code != 2 || !strings.Contains(r.stderr, "--workspace is required") {
		t.Errorf("no workspace: exit %d, %q", r.code, r.stderr)
	}
}

// The demo, end to end, as `make demo` runs it: the real CLI, the scripted
// model, a real OOM kill in the middle of a turn, recovery, the checks; then
// again with the workspace wiped and restored from the store.
func TestDemo(t *testing.T) {
	needCommand(t, "demo")
	claude := claudecli.Bin(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"intact", nil, ""},
		{"fresh-workspace", []string{"--fresh-workspace"}, "fresh workspace    wiped, then restored"},
		// The watchdog, forced: the agent's Bash tool runs detached (a
		// session of its own); the watchdog must still count and kill it.
		{"watchdog", []string{"--memory-enforcement", "watchdog"}, "oom-watchdog"},
	} {
		name := tc.name
		t.Run(name, func(t *testing.T) {
			tmp := t.TempDir()
			args := append([]string{"demo", "--workspace", filepath.Join(tmp, "ws"), "--store", "file://" + filepath.Join(tmp, "store")}, tc.args...)
			start := time.Now()
			r := tether(t, []string{"TETHER_CLAUDE_BIN=" + claude, "CACHE=" + tmp}, args...)
			t.Logf("demo %s: exit %d in %v\n%s", name, r.code, time.Since(start).Round(time.Millisecond), r.stdout)
			if r.code != 0 || !strings.Contains(r.stdout, "result             PASS") {
				t.Fatalf("demo failed: exit %d\nstderr: %s", r.code, r.stderr)
			}
			if !strings.Contains(r.stdout, "oom-kernel") && !strings.Contains(r.stdout, "oom-watchdog") {
				t.Errorf("the report does not name an OOM cause")
			}
			if !strings.Contains(r.stdout, tc.want) {
				t.Errorf("the report lacks %q", tc.want)
			}
		})
	}
}
