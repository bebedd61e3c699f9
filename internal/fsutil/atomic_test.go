package fsutil

import (
	"os"
	"path/filepath"
	"testing"
)

// Both writers replace a file whole, with the mode asked for, and leave no
// temp file behind, also when the directory does not exist.
func TestReplaceWholeFile(t *testing.T) {
	for name, write := range map[string]func(string, []byte, os.FileMode) error{
		"WriteFileAtomic": WriteFileAtomic,
		"ReplaceFile":     ReplaceFile,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "f.json")
			if err := write(p, []byte("a much longer old content"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := write(p, []byte("new"), 0o600); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(p)
			if err != nil || string(b) != "new" {
				t.Fatalf("read back %q, %v; want \"new\"", b, err)
			}
			fi, err := os.Stat(p)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("mode %v, %v; want 0600", fi.Mode(), err)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Fatalf("directory holds %d entries, want only the file", len(ents))
			}
			if err := write(filepath.Join(dir, "missing", "f"), []byte("x"), 0o600); err == nil {
				t.Fatal("writing into a missing directory succeeded")
			}
		})
	}
}
