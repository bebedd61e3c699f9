package agent

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestProjectKey(t *testing.T) {
	for _, tc := range []struct{ cwd, key string }{
		{"/workspace", "-workspace"},
		{"/tmp/TestRealCLITextAndBash4030172451/001", "-tmp-TestRealCLITextAndBash4030172451-001"},
		{"/w/repos/my.repo_x y", "-w-repos-my-repo-x-y"},
		{"/w/ünï", "-w--n-"},
		{"/w/😀", "-w---"}, // one '-' per UTF-16 code unit
		// Seen with the real CLI 2.1.328: a 254-character key is cut to
		// 200 and suffixed with a hash of the path.
		{
			"/tmp/TestProbeResume2335627536/001/a-very-long-directory-name-to-push-the-project-key-past-two-hundred-characters-xxxxxxxxxxxxxxxxxxxxxxx/and.another_one with spaces-and-ünïcode-yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy",
			"-tmp-TestProbeResume2335627536-001-a-very-long-directory-name-to-push-the-project-key-past-two-hundred-characters-xxxxxxxxxxxxxxxxxxxxxxx-and-another-one-with-spaces-and--n-code-yyyyyyyyyyyyyyyyyyyyyy-b7nsqr",
		},
	} {
		if got := ProjectKey(tc.cwd); got != tc.key {
			t.Errorf("ProjectKey(%q)\n got %q\nwant %q", tc.cwd, got, tc.key)
		}
	}
	if got := TranscriptPath("/w/.claude", "/w", "abc"); got != "/w/.claude/projects/-w/abc.jsonl" {
		t.Errorf("TranscriptPath = %q", got)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRepairTranscriptCutsTornLine(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "s.jsonl")
	good := `{"type":"user","n":1}` + "\n" + `{"type":"assistant","n":2}` + "\n"
	torn := `{"type":"assistant","message":{"content":[{"text":"half`
	writeFile(t, p, good+torn)

	rep, err := RepairTranscript(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, p); got != good {
		t.Errorf("repaired transcript = %q, want %q", got, good)
	}
	if rep.Cut != int64(len(torn)) || rep.SavedTo != p+".cut-"+itoa(len(good)) || !rep.Changed() {
		t.Errorf("report %+v", rep)
	}
	if got := readFile(t, rep.SavedTo); got != torn {
		t.Errorf("cut bytes kept = %q, want %q", got, torn)
	}
	// Idempotent: a second run changes nothing and keeps the saved bytes.
	rep2, err := RepairTranscript(p)
	if err != nil || rep2.Changed() {
		t.Errorf("second repair: %+v %v", rep2, err)
	}
	if readFile(t, rep.SavedTo) != torn {
		t.Error("second repair lost the kept bytes")
	}
	// Nothing else appears next to the transcript (no temp files left).
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("directory holds %d entries, want transcript and the cut file", len(ents))
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestRepairTranscriptCases(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, in, out string
		cut           int
		newline       bool
	}{
		{name: "clean", in: "{\"a\":1}\n{\"b\":2}\n", out: "{\"a\":1}\n{\"b\":2}\n"},
		{name: "empty", in: "", out: ""},
		{name: "complete last line without newline", in: "{\"a\":1}\n{\"b\":2}", out: "{\"a\":1}\n{\"b\":2}\n", newline: true},
		{name: "only a torn line", in: "{\"a\":", out: "", cut: 5},
		{name: "torn non-object", in: "{\"a\":1}\n12", out: "{\"a\":1}\n", cut: 2},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".jsonl")
		writeFile(t, p, tc.in)
		rep, err := RepairTranscript(p)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := readFile(t, p); got != tc.out {
			t.Errorf("%s: got %q want %q", tc.name, got, tc.out)
		}
		if rep.Cut != int64(tc.cut) || rep.AddedNewline != tc.newline {
			t.Errorf("%s: report %+v", tc.name, rep)
		}
		if tc.cut > 0 && readFile(t, rep.SavedTo) != tc.in[len(tc.in)-tc.cut:] {
			t.Errorf("%s: cut bytes not kept", tc.name)
		}
	}
}

// A last line longer than the backwards-read chunk, as a big tool result is.
func TestRepairTranscriptLongLines(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.jsonl")
	big := `{"type":"user","content":"` + strings.Repeat("x", 300<<10) + `"}` + "\n"
	torn := `{"type":"user","content":"` + strings.Repeat("y", 200<<10)
	writeFile(t, p, big+big+torn)
	rep, err := RepairTranscript(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, p); got != big+big {
		t.Errorf("repaired length %d, want %d", len(got), 2*len(big))
	}
	if b, _ := os.ReadFile(rep.SavedTo); !bytes.Equal(b, []byte(torn)) {
		t.Errorf("kept %d bytes, want %d", len(b), len(torn))
	}
}

func TestRepairTranscriptMissing(t *testing.T) {
	_, err := RepairTranscript(filepath.Join(t.TempDir(), "nope.jsonl"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "nope.jsonl") {
		t.Errorf("err = %v, want ErrNotExist naming the file", err)
	}
}
