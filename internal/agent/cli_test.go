package agent_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/agent"
	"github.com/tether-dev/tether/test/claudecli"
	"github.com/tether-dev/tether/test/modelserver"
)

// TestTranscriptPathRealCLI runs the real CLI in a directory whose name needs
// escaping, reached through a symlink, and checks the transcript is where
// TranscriptPath of ResolveCwd says.
func TestTranscriptPathRealCLI(t *testing.T) {
	bin := claudecli.Bin(t)
	srv := modelserver.Start(t.Logf)
	defer srv.Close()
	real := filepath.Join(t.TempDir(), "my repo.v2_ü")
	if err := os.MkdirAll(real, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	cwd := link
	cfg := filepath.Join(t.TempDir(), "claude-config")
	cmd := exec.Command(bin, "-p", "--output-format", "stream-json", "--verbose", "--input-format", "stream-json")
	cmd.Dir = cwd
	cmd.Env = srv.CLIEnv(cfg)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	stdin.Write(agent.UserLine("hello"))
	var id string
	sc := bufio.NewScanner(stdout)
	sc.Buffer(nil, 1<<24)
	deadline := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer deadline.Stop()
	for sc.Scan() {
		ev, err := agent.ParseLine(sc.Bytes())
		if err != nil {
			t.Fatalf("CLI printed a non-JSON line: %v", err)
		}
		if ev.IsInit() {
			id = ev.SessionID
		}
		if ev.Type == agent.TypeResult {
			break
		}
	}
	stdin.Close()
	cmd.Wait()
	if id == "" {
		t.Fatal("no init line")
	}
	resolved, err := agent.ResolveCwd(cwd)
	if err != nil || resolved != real {
		t.Fatalf("ResolveCwd(%s) = %s, %v; want %s", cwd, resolved, err, real)
	}
	p := agent.TranscriptPath(cfg, resolved, id)
	if _, err := os.Stat(p); err != nil {
		ents, _ := filepath.Glob(filepath.Join(cfg, "projects", "*", "*.jsonl"))
		t.Fatalf("transcript not at %s: %v; found %v", p, err, ents)
	}
	rep, err := agent.RepairTranscript(p)
	if err != nil || rep.Changed() {
		t.Errorf("a transcript the CLI closed cleanly needs no repair: %+v %v", rep, err)
	}
}
