package main

import (
	"encoding/json"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// randomBytes does not compress: its chunk is the largest object of a save.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(int64(n))).Read(b)
	return b
}

// largestObject returns the path of the biggest object file of a session in a
// file:// store at dir.
func largestObject(t *testing.T, dir, session string) string {
	t.Helper()
	var best string
	var size int64
	err := filepath.WalkDir(filepath.Join(dir, "default", session, "objects"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err == nil && fi.Size() > size {
			best, size = p, fi.Size()
		}
		return err
	})
	if err != nil || best == "" {
		t.Fatalf("no object in %s: %v", dir, err)
	}
	return best
}

// TestSnapshotLsMarksDamage: ls lists every snapshot, marks a torn manifest
// and a lost chunk with the reason and the object, and still exits 0; its
// --json carries the same as "problem".
func TestSnapshotLsMarksDamage(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	ws := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(ws, "notes.txt"), []byte("hello\n"), 0o644))
	must(os.WriteFile(filepath.Join(ws, "keep.bin"), randomBytes(300<<10), 0o644))
	common := []string{"--store", "file://" + dir, "--session", "s1"}
	for i := 0; i < 3; i++ {
		must(os.WriteFile(filepath.Join(ws, "notes.txt"), []byte(strings.Repeat("hello\n", i+1)), 0o644))
		if code, _, errs := tether(t, append([]string{"snapshot", "save", "--workspace", ws}, common...)...); code != 0 {
			t.Fatalf("save: exit %d: %s", code, errs)
		}
	}
	manifest := filepath.Join(dir, "default/s1/snapshots/0000000003")
	must(os.WriteFile(manifest, []byte{1, 2, 3}, 0o644))

	code, out, errs := tether(t, append([]string{"snapshot", "ls"}, common...)...)
	if code != 0 || !strings.Contains(out, "STATUS") || !strings.Contains(errs, "1 of 3 snapshots cannot be restored") {
		t.Fatalf("ls with a torn manifest: exit %d\n%s\n%s", code, out, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasSuffix(lines[1], "ok") || !strings.HasSuffix(lines[2], "ok") ||
		!strings.Contains(lines[3], "unreadable: object default/s1/snapshots/0000000003 is corrupt") {
		t.Fatalf("ls:\n%s", out)
	}

	must(os.Remove(largestObject(t, dir, "s1")))
	code, out, _ = tether(t, append([]string{"snapshot", "ls", "--json"}, common...)...)
	var list []lsEntry
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 3 {
		t.Fatalf("ls --json: exit %d %s", code, out)
	}
	for i, e := range list {
		want := "incomplete: object default/s1/objects/"
		if i == 2 {
			want = "unreadable: "
		}
		if !strings.HasPrefix(e.Problem, want) {
			t.Fatalf("ls --json entry %d: problem %q, want %q…", i, e.Problem, want)
		}
	}
}

// TestSnapshotVerifyRepair: verify --repair without a workspace says what
// is damaged and what to do (exit 1); with the workspace it saves a snapshot
// that uploads the lost chunk again and reports it repaired (exit 0), and a
// plain verify is clean afterwards.
func TestSnapshotVerifyRepair(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	ws := t.TempDir()
	if err := os.WriteFile(filepath.Join(ws, "keep.bin"), randomBytes(300<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	common := []string{"--store", "file://" + dir, "--session", "s2"}
	if code, _, errs := tether(t, append([]string{"snapshot", "save", "--workspace", ws}, common...)...); code != 0 {
		t.Fatalf("save: exit %d: %s", code, errs)
	}
	lost := largestObject(t, dir, "s2")
	if err := os.Remove(lost); err != nil {
		t.Fatal(err)
	}
	id := filepath.Base(lost)

	code, out, errs := tether(t, append([]string{"snapshot", "verify", "--repair"}, common...)...)
	if code != 1 || !strings.Contains(out, "problem: object default/s2/objects/"+id[:2]+"/"+id+" is missing") ||
		!strings.Contains(errs, "not repaired: no --workspace") || !strings.Contains(errs, "--repair --workspace DIR") {
		t.Fatalf("verify --repair without a workspace: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = tether(t, append([]string{"snapshot", "verify", "--repair", "--workspace", ws}, common...)...)
	if code != 0 || !strings.Contains(out, "repaired: object "+id) || !strings.Contains(out, "snapshot 0000000002 verifies") || strings.Contains(out, "still damaged") {
		t.Fatalf("verify --repair --workspace: exit %d\n%s\n%s", code, out, errs)
	}
	if code, out, errs = tether(t, append([]string{"snapshot", "verify"}, common...)...); code != 0 || !strings.Contains(out, "2 snapshots ok") {
		t.Fatalf("verify after the repair: exit %d\n%s\n%s", code, out, errs)
	}
	if code, _, errs = tether(t, append([]string{"snapshot", "verify", "--workspace", ws}, common...)...); code != 2 {
		t.Fatalf("verify --workspace without --repair: exit %d: %s", code, errs)
	}
}
