package fsutil

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestMain lets TestCopySelfRuns execute the copy it made of this test binary.
func TestMain(m *testing.M) {
	if os.Getenv("TETHER_COPYSELF_PROBE") == "1" {
		fmt.Print("copy-self-ok")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestCopySelfRuns(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "tether")
	if err := CopySelf(dst); err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	a, _ := os.ReadFile(self)
	b, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(a, b) {
		t.Fatalf("copy differs from the executable (err %v)", err)
	}
	st, _ := os.Stat(dst)
	if st.Mode().Perm() != 0o755 {
		t.Fatalf("mode %v", st.Mode())
	}
	// The copy is a working binary: run it (it is this test binary).
	cmd := exec.Command(dst)
	cmd.Env = append(os.Environ(), "TETHER_COPYSELF_PROBE=1")
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != "copy-self-ok" {
		t.Fatalf("copied binary does not run: %v\n%s", err, out)
	}
	entries, _ := os.ReadDir(filepath.Dir(dst))
	if len(entries) != 1 {
		t.Fatalf("temp files left behind: %v", entries)
	}
}

func TestCopySelfMissingDir(t *testing.T) {
	err := CopySelf(filepath.Join(t.TempDir(), "no", "such", "dir", "tether"))
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("shared volume")) {
		t.Fatalf("error %v, want one that says the volume is missing", err)
	}
}
