package demo

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The demo's checks must be able to fail: a flipped byte in the binary file,
// a lost staged change or a lost untracked file each fail their line.
func TestCompareCatchesLoss(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("bash", "-c", strings.ReplaceAll(buildCommand, "repos/demo-app", dir))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	before, err := captureRepo(dir)
	if err != nil {
		t.Fatal(err)
	}
	failed := func(checks []check) []string {
		var out []string
		for _, c := range checks {
			if !c.OK {
				out = append(out, c.What)
			}
		}
		return out
	}
	same, _ := captureRepo(dir)
	if f := failed(compare(before, same)); len(f) > 0 {
		t.Fatalf("an untouched repo fails %v", f)
	}
	for name, damage := range map[string]func(){
		"byte": func() {
			b, _ := os.ReadFile(filepath.Join(dir, "logo.bin"))
			b[100] ^= 1
			os.WriteFile(filepath.Join(dir, "logo.bin"), b, 0o644)
		},
		"staged":    func() { exec.Command("git", "-C", dir, "reset", "-q", "README.md").Run() },
		"untracked": func() { os.Remove(filepath.Join(dir, "NOTES.txt")) },
	} {
		restore := t.TempDir()
		exec.Command("cp", "-a", dir+"/.", restore).Run()
		damage()
		after, err := captureRepo(dir)
		if err != nil {
			t.Fatal(err)
		}
		if f := failed(compare(before, after)); len(f) == 0 {
			t.Errorf("%s: the loss went unnoticed", name)
		} else {
			t.Logf("%s: caught by %v", name, f)
		}
		os.RemoveAll(dir)
		exec.Command("cp", "-a", restore+"/.", dir).Run()
	}
}

func TestSyncStats(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sync.log")
	os.WriteFile(p, []byte(`time=x level=INFO msg="snapshot saved" id=0000000001 bytesUploaded=100 objects=3
time=x level=INFO msg="sync started"
time=x level=INFO msg="snapshot saved" id=0000000002 bytesUploaded=23 objects=1
`), 0o644)
	if n, b := syncStats(p); n != 2 || b != 123 {
		t.Errorf("syncStats = %d saves, %d bytes", n, b)
	}
}
