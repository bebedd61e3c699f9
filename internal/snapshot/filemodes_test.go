package snapshot

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
)

// modeOf is the permission bits of p (setuid, setgid, sticky included).
func modeOf(t *testing.T, p string) uint32 {
	t.Helper()
	var st syscall.Stat_t
	must(t, syscall.Lstat(p, &st))
	return st.Mode & 07777
}

// TestSetuidDroppedUnlessKept: the manifest keeps setuid and setgid bits as
// they are; a restore drops them from regular files unless KeepSetuid asks
// for them, and keeps everything else (sticky, a directory's setgid).
func TestSetuidDroppedUnlessKept(t *testing.T) {
	ctx := context.Background()
	repo := openRepo(t, "file://"+t.TempDir())
	ws := t.TempDir()
	modes := map[string]uint32{
		"bin/suid":   04755,
		"bin/sgid":   02755,
		"bin/both":   06750,
		"bin/sticky": 01755,
		"bin/plain":  0o755,
		"shared":     02775, // a directory: setgid is group inheritance
	}
	for p := range modes {
		if p != "shared" {
			writeFile(t, filepath.Join(ws, p), []byte(p+"\n"), 0o644)
		}
	}
	writeFile(t, filepath.Join(ws, "shared/f"), []byte("f\n"), 0o644)
	for p, m := range modes {
		must(t, syscall.Chmod(filepath.Join(ws, p), m))
	}
	st := save(t, repo, ws, SaveOptions{})
	man, err := repo.LoadManifest(ctx, st.ID)
	must(t, err)
	for _, e := range man.Entries {
		if want, ok := modes[e.Path]; ok && e.Mode != want {
			t.Errorf("manifest: %s has mode %o, want %o as saved", e.Path, e.Mode, want)
		}
	}
	for _, keep := range []bool{false, true} {
		out := filepath.Join(t.TempDir(), "out")
		rs, err := Restore(ctx, repo, out, RestoreOptions{KeepSetuid: keep})
		must(t, err)
		if wantDropped := map[bool]int{false: 3, true: 0}[keep]; rs.SetuidDropped != wantDropped {
			t.Errorf("KeepSetuid=%v: SetuidDropped = %d, want %d", keep, rs.SetuidDropped, wantDropped)
		}
		for p, m := range modes {
			want := m
			if !keep && p != "shared" {
				want &^= 06000
			}
			if got := modeOf(t, filepath.Join(out, p)); got != want {
				t.Errorf("KeepSetuid=%v: %s restored with mode %o, want %o", keep, p, got, want)
			}
		}
	}
}
