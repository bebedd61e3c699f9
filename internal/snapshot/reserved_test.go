package snapshot

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReservedNamesLeftOutWithWarning: entries of the agent's at names tether
// reserves (.tether-restore at the root, repos/<name>.tether-clone) are left
// out at save with their reason, in the stats and the manifest, and a
// warning logged once per Saver; everything else is saved and the snapshot
// restores. Without the check, .tether-restore was dropped without a word
// and a .tether-clone directory saved for hydrate to delete.
func TestReservedNamesLeftOutWithWarning(t *testing.T) {
	ctx := context.Background()
	repo := openRepo(t, "file://"+t.TempDir())
	ws := t.TempDir()
	writeFile(t, filepath.Join(ws, ".tether-restore/tree/notes.txt"), []byte("mine\n"), 0o644)
	writeFile(t, filepath.Join(ws, "repos/app.tether-clone/f.txt"), []byte("mine too\n"), 0o644)
	writeFile(t, filepath.Join(ws, "keep.txt"), []byte("kept\n"), 0o644)
	// Look-alikes elsewhere are ordinary names.
	writeFile(t, filepath.Join(ws, "sub/.tether-restore"), []byte("deep\n"), 0o644)
	writeFile(t, filepath.Join(ws, "app.tether-clone"), []byte("root\n"), 0o644)
	var logBuf bytes.Buffer
	s, err := NewSaver(repo, ws, SaveOptions{Log: slog.New(slog.NewTextHandler(&logBuf, nil))})
	must(t, err)
	defer s.Close()
	var st *SaveStats
	for i := 0; i < 2; i++ {
		writeFile(t, filepath.Join(ws, "keep.txt"), []byte{'k', byte('0' + i)}, 0o644)
		st, err = s.Save(ctx)
		must(t, err)
	}
	want := map[string]string{".tether-restore": "reserved by tether (restore builds", "repos/app.tether-clone": "reserved by tether (hydrate clones"}
	if len(st.LeftOut) != len(want) {
		t.Fatalf("left out %+v, want %v", st.LeftOut, want)
	}
	for _, f := range st.LeftOut {
		if !strings.Contains(f.Reason, want[f.Path]) || want[f.Path] == "" {
			t.Errorf("left out %s: %q, want a reason saying %q", f.Path, f.Reason, want[f.Path])
		}
	}
	m, err := repo.LoadManifest(ctx, st.ID)
	must(t, err)
	if m.Summary.LeftOut != 2 || len(m.LeftOut) != 2 {
		t.Errorf("manifest lists %d left out (summary %d), want 2", len(m.LeftOut), m.Summary.LeftOut)
	}
	for p := range want {
		if n := strings.Count(logBuf.String(), "path="+p+" "); n != 1 {
			t.Errorf("warned %d times about %s over two saves, want once:\n%s", n, p, logBuf.String())
		}
	}
	out := filepath.Join(t.TempDir(), "out")
	_, err = Restore(ctx, repo, out, RestoreOptions{})
	must(t, err)
	for p, body := range map[string]string{"keep.txt": "k1", "sub/.tether-restore": "deep\n", "app.tether-clone": "root\n"} {
		if b, err := os.ReadFile(filepath.Join(out, p)); err != nil || string(b) != body {
			t.Errorf("%s restored as %q, %v; want %q", p, b, err, body)
		}
	}
	if _, err := os.Lstat(filepath.Join(out, "repos/app.tether-clone")); !os.IsNotExist(err) {
		t.Errorf("repos/app.tether-clone restored: %v", err)
	}
}
