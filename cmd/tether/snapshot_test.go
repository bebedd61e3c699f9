package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tether-dev/tether/internal/cliutil"
)

// tether runs the command tree in-process and returns its exit code and output.
func tether(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := newRootCmd()
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	code := cliutil.Run("tether", cmd, args, &errb)
	return code, out.String(), errb.String()
}

func TestSnapshotCLI(t *testing.T) {
	storeURL := "file://" + t.TempDir()
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	ws := t.TempDir()
	if err := os.WriteFile(filepath.Join(ws, "notes.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	common := []string{"--store", storeURL, "--session", "s1"}

	code, out, errs := tether(t, append([]string{"snapshot", "save", "--workspace", ws, "--json"}, common...)...)
	if code != 0 {
		t.Fatalf("save: exit %d: %s", code, errs)
	}
	var saved map[string]any
	if err := json.Unmarshal([]byte(out), &saved); err != nil {
		t.Fatalf("save --json printed %q: %v", out, err)
	}
	for _, k := range []string{"id", "files", "bytesScanned", "bytesUploaded", "objectsUploaded", "durationMs"} {
		if _, ok := saved[k]; !ok {
			t.Errorf("save --json lacks %q: %s", k, out)
		}
	}
	if saved["id"] != "0000000001" || saved["files"] != float64(1) {
		t.Fatalf("save --json = %s", out)
	}

	code, out, _ = tether(t, append([]string{"snapshot", "ls", "--json"}, common...)...)
	var list []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0]["id"] != "0000000001" {
		t.Fatalf("ls --json: exit %d, %q", code, out)
	}
	if code, out, _ = tether(t, append([]string{"snapshot", "ls"}, common...)...); code != 0 || !strings.Contains(out, "0000000001") {
		t.Fatalf("ls: exit %d, %q", code, out)
	}
	if code, out, errs = tether(t, append([]string{"snapshot", "verify"}, common...)...); code != 0 || !strings.Contains(out, "1 snapshots ok") {
		t.Fatalf("verify: exit %d, %q %q", code, out, errs)
	}
	dst := filepath.Join(t.TempDir(), "restored")
	if code, _, errs = tether(t, append([]string{"snapshot", "restore", "--workspace", dst, "--snapshot", "1"}, common...)...); code != 0 {
		t.Fatalf("restore: exit %d: %s", code, errs)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "notes.txt")); err != nil || string(b) != "hello\n" {
		t.Fatalf("restored file: %q %v", b, err)
	}
	if code, _, errs = tether(t, append([]string{"snapshot", "restore", "--workspace", t.TempDir(), "--snapshot", "9"}, common...)...); code != 1 || !strings.Contains(errs, "does not exist") {
		t.Fatalf("restore of an unknown id: exit %d: %s", code, errs)
	}
	if code, out, errs = tether(t, append([]string{"snapshot", "prune", "--keep", "1"}, common...)...); code != 0 {
		t.Fatalf("prune: exit %d: %s %s", code, out, errs)
	}
}

func TestSnapshotCLIUsageErrors(t *testing.T) {
	store := "file://" + t.TempDir()
	for _, args := range [][]string{
		{"snapshot", "ls", "--store", store, "--session", "Bad_Name"},
		{"snapshot", "ls", "--store", store, "--session", "s1", "--namespace", "NS"},
		{"snapshot", "ls", "--store", store},
		{"snapshot", "save", "--store", store, "--session", "s1"},
		{"snapshot", "ls", "--store", store, "--session", "s1", "--no-such-flag"},
		{"snapshot", "ls", "--store", store, "--session", "s1", "extra-arg"},
		{"snapshot", "prune", "--store", store, "--session", "s1"},
	} {
		code, _, errs := tether(t, args...)
		if code != exitUsage {
			t.Errorf("%q: exit %d, want %d (%s)", args, code, exitUsage, errs)
		}
	}
	code, _, errs := tether(t, "snapshot", "ls", "--store", "file:///nonexistent-parent/x/y", "--session", "s1")
	if code != exitError || errs == "" {
		t.Errorf("unopenable store: exit %d: %s", code, errs)
	}
}

// TestSnapshotSaveRestoreExitCodes: the exit codes the README gives for
// `snapshot save` and `snapshot restore` beyond success: 1 when nothing
// was saved or restored, 2 for the caller's mistake.
func TestSnapshotSaveRestoreExitCodes(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	common := []string{"--store", "file://" + t.TempDir(), "--session", "s1"}
	ws := t.TempDir()
	if err := os.WriteFile(filepath.Join(ws, "a.txt"), []byte("a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := tether(t, append([]string{"snapshot", "save", "--workspace", ws}, common...)...); code != exitOK {
		t.Fatalf("save: exit %d: %s", code, errs)
	}
	nonEmpty := t.TempDir()
	if err := os.WriteFile(filepath.Join(nonEmpty, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"snapshot", "save", "--workspace", filepath.Join(ws, "missing")}, exitError, "no such file"},
		{[]string{"snapshot", "restore", "--workspace", nonEmpty}, exitError, "is not empty"},
		{[]string{"snapshot", "restore"}, exitUsage, "--workspace is required"},
		{[]string{"snapshot", "save"}, exitUsage, "--workspace is required"},
	} {
		code, _, errs := tether(t, append(tc.args, common...)...)
		if code != tc.code || !strings.Contains(errs, tc.says) {
			t.Errorf("%q: exit %d (%s), want %d saying %q", tc.args, code, errs, tc.code, tc.says)
		}
	}
}
