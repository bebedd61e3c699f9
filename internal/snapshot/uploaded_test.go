package snapshot

import (
	"context"
	"math/rand"
	"path/filepath"
	"testing"
)

// The manifest records what its save uploaded (the page's snapshot
// timeline shows it): the first save uploads the file, a save after a
// small append only about the append, an unchanged save nothing.
func TestSummaryUploaded(t *testing.T) {
	ctx := context.Background()
	repo := openRepo(t, "file://"+t.TempDir())
	ws := t.TempDir()
	big := make([]byte, 1<<20) // incompressible
	rand.New(rand.NewSource(1)).Read(big)
	writeFile(t, filepath.Join(ws, "big.bin"), big, 0o644)
	first := save(t, repo, ws, SaveOptions{})
	writeFile(t, filepath.Join(ws, "note.txt"), []byte("a small note\n"), 0o644)
	second := save(t, repo, ws, SaveOptions{})
	infos, err := List(ctx, repo)
	must(t, err)
	got := map[string]int64{}
	for _, m := range infos {
		got[m.ID] = m.Summary.Uploaded
	}
	// The save's stats also count the manifest and the base object.
	if u := got[first.ID]; u < 1<<20 || u > first.BytesUploaded {
		t.Errorf("first snapshot: uploaded %d recorded, want the 1 MiB file and at most the save's %d", u, first.BytesUploaded)
	}
	if u := got[second.ID]; u <= 0 || u > 64<<10 || u >= got[first.ID] {
		t.Errorf("second snapshot: uploaded %d recorded, want a little (first %d)", u, got[first.ID])
	}
}
