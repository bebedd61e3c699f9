package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestKeepSetuidFlag: `snapshot restore` and `hydrate` drop the setuid and
// setgid bits of restored files and say so, and keep them with --keep-setuid.
func TestKeepSetuidFlag(t *testing.T) {
	storeURL := "file://" + t.TempDir()
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	ws := t.TempDir()
	p := filepath.Join(ws, "tool")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Chmod(p, 06755); err != nil {
		t.Fatal(err)
	}
	common := []string{"--store", storeURL, "--session", "s1"}
	if code, _, errs := tether(t, append([]string{"snapshot", "save", "--workspace", ws}, common...)...); code != 0 {
		t.Fatalf("save: exit %d: %s", code, errs)
	}
	for _, cmd := range []string{"snapshot restore", "hydrate"} {
		for _, keep := range []bool{false, true} {
			dst := filepath.Join(t.TempDir(), "ws")
			args := append(strings.Fields(cmd), "--workspace", dst)
			if keep {
				args = append(args, "--keep-setuid")
			}
			code, out, errs := tether(t, append(args, common...)...)
			if code != 0 {
				t.Fatalf("%s: exit %d: %s", cmd, code, errs)
			}
			var st syscall.Stat_t
			if err := syscall.Stat(filepath.Join(dst, "tool"), &st); err != nil {
				t.Fatal(err)
			}
			want := uint32(0o755)
			if keep {
				want = 06755
			}
			if got := st.Mode & 07777; got != want {
				t.Errorf("%s keep=%v: tool restored with mode %o, want %o", cmd, keep, got, want)
			}
			said := strings.Contains(out+errs, "without their setuid or setgid bits")
			if said == keep {
				t.Errorf("%s keep=%v: output says the bits were dropped: %v\n%s%s", cmd, keep, said, out, errs)
			}
		}
	}
}
