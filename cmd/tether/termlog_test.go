package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/cliutil"
	"github.com/tether-dev/tether/internal/podreport"
	"golang.org/x/sys/unix"
)

// hydrateLog runs a real `tether hydrate` process with --termination-log and
// returns what it wrote there, parsed by the operator's parser.
func hydrateLog(t *testing.T, common []string) (*podreport.Hydrate, []byte) {
	t.Helper()
	logf := filepath.Join(t.TempDir(), "termination-log")
	cmd := tetherProc(t, []string{"XDG_CACHE_HOME=" + t.TempDir()}, append([]string{"hydrate", "--workspace", filepath.Join(t.TempDir(), "ws"), "--termination-log", logf}, common...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hydrate: %v\n%s", err, out)
	}
	data, err := os.ReadFile(logf)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := podreport.Parse(string(data))
	h, ok := rec.(*podreport.Hydrate)
	if err != nil || !ok {
		t.Fatalf("termination log %q: %v (%T)", data, err, rec)
	}
	return h, data
}

// TestHydrateTerminationLogSkipped: a torn newest manifest; hydrate restores
// the one before and its termination log says so, naming the skipped one.
func TestHydrateTerminationLogSkipped(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	ws := t.TempDir()
	common := []string{"--store", "file://" + dir, "--session", "s1"}
	for i := 0; i < 3; i++ {
		if err := os.WriteFile(filepath.Join(ws, "notes.txt"), []byte(strings.Repeat("hi\n", i+1)), 0o644); err != nil {
			t.Fatal(err)
		}
		if code, _, errs := tether(t, append([]string{"snapshot", "save", "--workspace", ws}, common...)...); code != 0 {
			t.Fatalf("save: exit %d: %s", code, errs)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "default/s1/snapshots/0000000003"), []byte{1, 2, 3}, 0o644); err != nil {
		t.Fatal(err)
	}
	h, data := hydrateLog(t, common)
	if h.Outcome != "restored-older" || h.Snapshot != "0000000002" || len(h.Skipped) != 1 || h.Skipped[0].ID != "0000000003" ||
		!strings.Contains(h.Skipped[0].Reason, "corrupt") || h.Epoch == 0 || h.Omitted != 0 {
		t.Fatalf("termination log: %s", data)
	}
}

// TestHydrateTerminationLogBound: 150 torn manifests over one good snapshot:
// the record stays within the kubelet's 4096 bytes, valid, newest skips
// first, and counts what it left out.
func TestHydrateTerminationLogBound(t *testing.T) {
	dir, common := savedSession(t, nil)
	const bad = 150
	for i := 2; i <= bad+1; i++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("default/s1/snapshots/%010d", i)), []byte("torn"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h, data := hydrateLog(t, common)
	if len(data) > podreport.MaxBytes || !json.Valid(data) {
		t.Fatalf("termination log of %d bytes (valid JSON: %v)", len(data), json.Valid(data))
	}
	if h.Outcome != "restored-older" || h.Snapshot != "0000000001" || len(h.Skipped) == 0 ||
		len(h.Skipped)+h.Omitted != bad || h.Skipped[0].ID != fmt.Sprintf("%010d", bad+1) || h.Skipped[0].Reason == "" {
		t.Fatalf("termination log (%d bytes, %d listed, %d omitted): %.300s", len(data), len(h.Skipped), h.Omitted, data)
	}
	t.Logf("%d bytes: %d skips listed, %d omitted", len(data), len(h.Skipped), h.Omitted)
}

// TestSyncFencedTerminationLog: a real `tether sync` fenced by a second
// hydrate exits 3 and leaves its record: its epoch, the taker's, who and when.
func TestSyncFencedTerminationLog(t *testing.T) {
	url := "file://" + t.TempDir()
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	common := []string{"--store", url, "--session", "f1"}
	wsA, wsB := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	if code, _, errs := tether(t, append([]string{"hydrate", "--workspace", wsA}, common...)...); code != 0 {
		t.Fatalf("hydrate A: exit %d: %s", code, errs)
	}
	logf := filepath.Join(t.TempDir(), "termination-log")
	a := startSyncProc(t, append([]string{"--workspace", wsA, "--termination-log", logf}, common...)...)
	if err := os.WriteFile(filepath.Join(wsA, "a.txt"), []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if code, _, errs := tether(t, append([]string{"hydrate", "--workspace", wsB}, common...)...); code != 0 {
		t.Fatalf("hydrate B: exit %d: %s", code, errs)
	}
	for i := 0; ; i++ {
		if err := os.WriteFile(filepath.Join(wsA, "a.txt"), []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		select {
		case <-a.done:
		case <-time.After(200 * time.Millisecond):
			if i < 75 {
				continue
			}
			t.Fatalf("sync A still runs 15s after the takeover: %s", a.stderr.String())
		}
		break
	}
	if a.code != cliutil.ExitFenced {
		t.Fatalf("sync A exited %d: %s", a.code, a.stderr.String())
	}
	data, err := os.ReadFile(logf)
	if err != nil {
		t.Fatalf("no fence record: %v", err)
	}
	rec, err := podreport.Parse(string(data))
	f, ok := rec.(*podreport.Fence)
	host, _ := os.Hostname()
	if err != nil || !ok || f.Epoch != 1 || f.ByEpoch != 2 || f.ByVia != "hydrate" || f.ByHost != podreport.Clean(host, 64) ||
		f.ByTime.IsZero() || f.Time.IsZero() || !strings.Contains(f.Message, "was taken over by writer epoch 2") || len(data) > podreport.MaxBytes {
		t.Fatalf("fence record %s: %v", data, err)
	}
}

// TestHydrateTerminationLogLeftOut: a snapshot whose save left out a FIFO and
// held a broken repository file by file: hydrate's record counts both, for
// the session's status.
func TestHydrateTerminationLogLeftOut(t *testing.T) {
	_, common := savedSession(t, func(ws string) {
		if err := unix.Mkfifo(filepath.Join(ws, "pipe"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(ws, "repos", "dangling"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ws, "repos", "dangling", ".git"), []byte("gitdir: /nonexistent/tether/.git\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	h, data := hydrateLog(t, common)
	if h.Outcome != "restored" || h.LeftOut != 1 || h.ReposAsFiles != 1 {
		t.Fatalf("termination log: %s", data)
	}
}

// savedSession saves one snapshot of a workspace holding notes.txt (and what
// setup adds) with a real `tether snapshot save` into a new file:// store,
// and returns the store's directory and the store flags.
func savedSession(t *testing.T, setup func(ws string)) (dir string, common []string) {
	t.Helper()
	dir = t.TempDir()
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	ws := t.TempDir()
	common = []string{"--store", "file://" + dir, "--session", "s1"}
	if err := os.WriteFile(filepath.Join(ws, "notes.txt"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(ws)
	}
	if code, _, errs := tether(t, append([]string{"snapshot", "save", "--workspace", ws}, common...)...); code != 0 {
		t.Fatalf("save: exit %d: %s", code, errs)
	}
	return dir, common
}
