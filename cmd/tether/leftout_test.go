package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSnapshotCLILeftOut: what a save leaves out is in `snapshot save
// --json` (escaped, with the exact bytes in base64), in `snapshot ls` and in
// `snapshot restore`'s report, the save exits 0, and byte names round trip.
func TestSnapshotCLILeftOut(t *testing.T) {
	storeURL := "file://" + t.TempDir()
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	ws := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(ws, "notes\xff.txt"), []byte("ff"), 0o644))
	must(os.WriteFile(filepath.Join(ws, "notes\xfe.txt"), []byte("fe"), 0o644))
	must(unix.Mkfifo(filepath.Join(ws, "pipe\xfd"), 0o644))
	must(os.MkdirAll(filepath.Join(ws, "repos", "dangling"), 0o755))
	must(os.WriteFile(filepath.Join(ws, "repos", "dangling", ".git"), []byte("gitdir: /nonexistent/x/.git\n"), 0o644))
	common := []string{"--store", storeURL, "--session", "s1"}

	code, out, errs := tether(t, append([]string{"snapshot", "save", "--workspace", ws, "--json"}, common...)...)
	if code != 0 {
		t.Fatalf("save: exit %d: %s", code, errs)
	}
	var saved struct {
		LeftOut []struct {
			Path, PathB64, Reason string
		} `json:"leftOut"`
		ReposAsFiles []struct{ Path, Reason string } `json:"reposAsFiles"`
	}
	must(json.Unmarshal([]byte(out), &saved))
	if len(saved.LeftOut) != 1 || saved.LeftOut[0].Path != `"pipe\xfd"` || saved.LeftOut[0].PathB64 != "cGlwZf0=" || !strings.Contains(saved.LeftOut[0].Reason, "named pipe") {
		t.Fatalf("save --json leftOut: %+v\n%s", saved.LeftOut, out)
	}
	if len(saved.ReposAsFiles) != 1 || saved.ReposAsFiles[0].Path != "repos/dangling" {
		t.Fatalf("save --json reposAsFiles: %+v", saved.ReposAsFiles)
	}
	code, out, _ = tether(t, append([]string{"snapshot", "ls", "--json"}, common...)...)
	var list []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0]["leftOut"] != float64(1) || list[0]["reposAsFiles"] != float64(1) {
		t.Fatalf("ls --json: exit %d, %q", code, out)
	}
	if code, out, _ = tether(t, append([]string{"snapshot", "ls"}, common...)...); code != 0 || !strings.Contains(out, "LEFT OUT") {
		t.Fatalf("ls: exit %d, %q", code, out)
	}
	dst := filepath.Join(t.TempDir(), "restored")
	code, out, errs = tether(t, append([]string{"snapshot", "restore", "--workspace", dst}, common...)...)
	if code != 0 {
		t.Fatalf("restore: exit %d: %s", code, errs)
	}
	for _, want := range []string{"repository repos/dangling: restored file by file", `"pipe\xfd": a named pipe`} {
		if !strings.Contains(out, want) {
			t.Fatalf("restore output lacks %q:\n%s", want, out)
		}
	}
	for name, want := range map[string]string{"notes\xff.txt": "ff", "notes\xfe.txt": "fe"} {
		if b, err := os.ReadFile(filepath.Join(dst, name)); err != nil || string(b) != want {
			t.Fatalf("%q restored as %q, %v", name, b, err)
		}
	}
}
