package modelserver_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/test/claudecli"
	"github.com/tether-dev/tether/test/modelserver"
)

// cliSession runs the real CLI in stream-json mode and hands its output lines
// to the test.
type cliSession struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan map[string]any
}

func startCLI(t *testing.T, srv *modelserver.Server, dir string, extra ...string) *cliSession {
	t.Helper()
	bin := claudecli.Bin(t)
	args := append([]string{"-p", "--output-format", "stream-json", "--verbose", "--input-format", "stream-json",
		"--allowedTools", "Bash,Write,Edit,Read"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = srv.CLIEnv(filepath.Join(dir, ".claude"))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &cliSession{t: t, cmd: cmd, stdin: stdin, lines: make(chan map[string]any, 100)}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<24)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Logf("cli: non-JSON line %q", sc.Text())
				continue
			}
			s.lines <- m
		}
		close(s.lines)
	}()
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return s
}

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Logf("cli stderr: %s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (s *cliSession) send(text string) {
	s.t.Helper()
	j, _ := json.Marshal(map[string]any{"type": "user", "message": map[string]any{"role": "user", "content": text}})
	if _, err := fmt.Fprintf(s.stdin, "%s\n", j); err != nil {
		s.t.Fatal(err)
	}
}

// untilResult returns every line up to and including the next result line.
func (s *cliSession) untilResult() []map[string]any {
	s.t.Helper()
	var out []map[string]any
	timeout := time.After(60 * time.Second)
	for {
		select {
		case m, ok := <-s.lines:
			if !ok {
				s.t.Fatalf("CLI exited before a result line; got %d lines", len(out))
			}
			out = append(out, m)
			if m["type"] == "result" {
				return out
			}
		case <-timeout:
			s.t.Fatalf("no result line within 60s; got %v", out)
		}
	}
}

func TestRealCLITextBashReadEdit(t *testing.T) {
	dir := t.TempDir()
	srv := modelserver.Start(t.Logf,
		modelserver.Step{Cue: "say hello", Reply: []modelserver.Block{modelserver.Text("hello from the script")}},
		modelserver.Step{Cue: "make a file", Reply: []modelserver.Block{modelserver.Text("running"), modelserver.Bash("echo made-by-bash > made.txt && echo BASH-OK")}},
		modelserver.Step{Cue: "BASH-OK", Reply: []modelserver.Block{modelserver.Text("file made")}},
		modelserver.Step{Cue: "now edit it", Reply: []modelserver.Block{modelserver.Read(filepath.Join(dir, "made.txt"))}},
		modelserver.Step{Cue: "made-by-bash", Reply: []modelserver.Block{modelserver.Edit(filepath.Join(dir, "made.txt"), "made-by-bash", "changed-by-edit")}},
		modelserver.Step{Cue: "has been updated", Reply: []modelserver.Block{modelserver.Text("edited")}},
	)
	defer srv.Close()
	cli := startCLI(t, srv, dir)

	start := time.Now()
	cli.send("please say hello")
	lines := cli.untilResult()
	t.Logf("turn 1: %d lines in %v", len(lines), time.Since(start))
	if lines[0]["type"] != "system" || lines[0]["subtype"] != "init" {
		t.Errorf("first line is not init: %v", lines[0])
	}
	res := lines[len(lines)-1]
	if res["result"] != "hello from the script" || res["is_error"] != false {
		t.Errorf("turn 1 result = %v", res)
	}

	start = time.Now()
	cli.send("now make a file")
	lines = cli.untilResult()
	t.Logf("turn 2: %d lines in %v", len(lines), time.Since(start))
	res = lines[len(lines)-1]
	if res["result"] != "file made" {
		t.Errorf("turn 2 result = %v", res)
	}
	b, err := os.ReadFile(filepath.Join(dir, "made.txt"))
	if err != nil || string(b) != "made-by-bash\n" {
		t.Errorf("the CLI did not run the scripted Bash command: %q %v", b, err)
	}
	cli.send("now edit it")
	lines = cli.untilResult()
	if res := lines[len(lines)-1]; res["result"] != "edited" {
		t.Errorf("turn 3 result = %v", res["result"])
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "made.txt")); string(b) != "changed-by-edit\n" {
		t.Errorf("the CLI did not run the scripted Edit: %q", b)
	}
	agent := srv.AgentRequests()
	last := agent[len(agent)-1]
	h := last.History()
	for _, want := range []string{"please say hello", "hello from the script", "now make a file", "BASH-OK"} {
		if !strings.Contains(h, want) {
			t.Errorf("last request history lacks %q:\n%s", want, h)
		}
	}
	if u := srv.Unknown(); len(u) > 0 {
		t.Logf("the CLI called paths the server does not script: %v", u)
	}
	// The CLI prints an init line at the start of every turn, with the same id.
	if lines[0]["type"] != "system" || lines[0]["subtype"] != "init" {
		t.Errorf("turn 2 does not start with init: %v", lines[0])
	}
}
