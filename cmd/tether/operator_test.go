package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain lets a test run a copy of this test binary as the tether command.
func TestMain(m *testing.M) {
	if os.Getenv("TETHER_CMD_TEST_MAIN") == "1" {
		main()
	}
	os.Exit(m.Run())
}

// fakeOperator writes a tether-operator into dir that prints how it was run.
func fakeOperator(t *testing.T, dir, tag string) {
	t.Helper()
	script := "#!/bin/sh\necho " + tag + "\nfor a in \"$@\"; do echo \"arg=$a\"; done\necho \"env=$TETHER_PROBE_ENV\"\nexit 7\n"
	if err := os.WriteFile(filepath.Join(dir, operatorBinary), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestOperatorExecs runs a real tether binary (this test binary, installed by
// copy-self) and checks that `tether operator ...` becomes tether-operator
// with the same arguments, environment and exit code: first next to tether,
// then on $PATH, and a one-line error when there is none.
func TestOperatorExecs(t *testing.T) {
	binDir, pathDir := t.TempDir(), t.TempDir()
	tetherBin := filepath.Join(binDir, "tether")
	if code, _, errs := tether(t, "copy-self", tetherBin); code != exitOK {
		t.Fatalf("copy-self: exit %d: %s", code, errs)
	}
	self, _ := os.Executable()
	a, _ := os.ReadFile(self)
	if b, err := os.ReadFile(tetherBin); err != nil || !bytes.Equal(a, b) {
		t.Fatalf("copy-self did not copy the running binary (err %v)", err)
	}

	runOperator := func(args ...string) (int, string, string) {
		cmd := exec.Command(tetherBin, append([]string{"operator"}, args...)...)
		cmd.Env = append(os.Environ(), "TETHER_CMD_TEST_MAIN=1", "TETHER_PROBE_ENV=kept", "PATH="+pathDir+":/usr/bin:/bin")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, out.String(), errb.String()
	}

	fakeOperator(t, pathDir, "from-path")
	fakeOperator(t, binDir, "next-to-tether")
	code, out, errs := runOperator("--help", "--leader-elect", "x y")
	want := "next-to-tether\narg=--help\narg=--leader-elect\narg=x y\nenv=kept\n"
	if code != 7 || out != want {
		t.Fatalf("tether operator next to tether: exit %d, stdout %q, stderr %q; want exit 7 and %q", code, out, errs, want)
	}

	os.Remove(filepath.Join(binDir, operatorBinary))
	code, out, _ = runOperator("--kubeconfig", "k")
	if want := "from-path\narg=--kubeconfig\narg=k\nenv=kept\n"; code != 7 || out != want {
		t.Fatalf("tether operator from $PATH: exit %d, stdout %q; want exit 7 and %q", code, out, want)
	}

	os.Remove(filepath.Join(pathDir, operatorBinary))
	code, out, errs = runOperator("--help")
	line := strings.TrimSpace(errs)
	if code != exitError || out != "" || strings.Contains(line, "\n") ||
		!strings.Contains(line, filepath.Join(binDir, operatorBinary)) || !strings.Contains(line, "$PATH") || !strings.Contains(line, "make build") {
		t.Fatalf("tether operator without tether-operator: exit %d, stdout %q, stderr %q; want exit 1 and one line naming where it looked and `make build`", code, out, errs)
	}
}

func TestCopySelfUsage(t *testing.T) {
	if code, _, errs := tether(t, "copy-self"); code != exitUsage || !strings.Contains(errs, "destination") {
		t.Errorf("copy-self without DEST: exit %d %q", code, errs)
	}
	code, _, errs := tether(t, "copy-self", filepath.Join(t.TempDir(), "missing", "tether"))
	if code != exitError || !strings.Contains(errs, "shared volume") {
		t.Errorf("copy-self into a missing directory: exit %d %q", code, errs)
	}
	// The install step is not advertised: only the pod spec runs it.
	if _, out, _ := tether(t, "--help"); strings.Contains(out, "copy-self") {
		t.Errorf("copy-self shows in tether --help:\n%s", out)
	}
}
