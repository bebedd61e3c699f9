package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/agent"
)

// fakeCLI writes a shell script standing in for a broken CLI.
func fakeCLI(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "claude")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func runFake(t *testing.T, script string, timeout time.Duration) (time.Duration, string, error) {
	t.Helper()
	ws := t.TempDir()
	cfg := Config{Workspace: ws, ClaudeBin: fakeCLI(t, script), StartTimeout: timeout, TurnStartTimeout: timeout, Logger: testLogger(t), InitialPrompt: "hi"}
	rr := startRunner(t, cfg)
	start := time.Now()
	select {
	case err := <-rr.errc:
		rr.errc <- err
		return time.Since(start), ws, err
	case <-time.After(timeout + 10*time.Second):
		t.Fatalf("runner hangs on a broken CLI")
		return 0, ws, nil
	}
}

func TestCLIExitsImmediately(t *testing.T) {
	took, ws, err := runFake(t, "echo 'fatal: cannot start, bad install' >&2\nexit 3\n", 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "bad install") {
		t.Fatalf("err = %v, want the exit status and the CLI's stderr", err)
	}
	if took > 3*time.Second {
		t.Errorf("took %v to notice", took)
	}
	if st := readStatus(t, ws); st.State != StateFailed || !strings.Contains(st.Error, "exit status 3") {
		t.Errorf("status %+v", st)
	}
}

func TestCLIPrintsGarbage(t *testing.T) {
	// A child keeps the CLI's stdout open: the runner must not wait on it.
	took, _, err := runFake(t, "echo 'this is not json'\nsleep 60 &\nsleep 60\n", 2*time.Second)
	if err == nil || !strings.Contains(err.Error(), "did not answer the initialize request within 2s") || !strings.Contains(err.Error(), "this is not json") {
		t.Fatalf("err = %v, want a timeout naming the garbage", err)
	}
	if took > 5*time.Second {
		t.Errorf("took %v to give up", took)
	}
}

// TestCLIDiesMidTurn: the CLI answers the handshake, starts a turn, then
// exits. The id it announced is on disk and the runner says what happened.
func TestCLIDiesMidTurn(t *testing.T) {
	script := `read line
echo '{"type":"control_response","response":{"subtype":"success","request_id":"tether-initialize","response":{"claude_code_version":"fake"}}}'
read line
echo '{"type":"system","subtype":"init","session_id":"11111111-fake"}'
echo 'segfault or so' >&2
exit 7
`
	_, ws, err := runFake(t, script, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "exit status 7") || !strings.Contains(err.Error(), "turn 1 in flight") {
		t.Fatalf("err = %v", err)
	}
	if id, _ := agent.OpenSessionIDs(ws).Get("main"); id != "11111111-fake" {
		t.Errorf("session id on disk = %q", id)
	}
	if rs := findRunner(readLog(t, ws), "cli_exit"); len(rs) != 1 {
		t.Errorf("cli_exit records: %v", rs)
	}
}

// TestCLISilentAfterMessage: a CLI that takes a message and says nothing is
// killed after TurnStartTimeout with a clear error.
func TestCLISilentAfterMessage(t *testing.T) {
	script := `read line
echo '{"type":"control_response","response":{"subtype":"success","request_id":"tether-initialize","response":{}}}'
sleep 60
`
	_, _, err := runFake(t, script, 2*time.Second)
	if err == nil || !strings.Contains(err.Error(), "said nothing for 2s") {
		t.Fatalf("err = %v", err)
	}
}

// TestResumeUnderNewID: a CLI version that continues a resumed conversation
// under a new session id. The outcome is still resumed, and the new id is
// what session-ids.json holds from then on.
func TestResumeUnderNewID(t *testing.T) {
	ws := t.TempDir()
	const old, renewed = "aaaaaaaa-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002"
	if _, err := agent.OpenSessionIDs(ws).Set("main", old); err != nil {
		t.Fatal(err)
	}
	tp := agent.TranscriptPath(filepath.Join(ws, ClaudeDir), ws, old)
	os.MkdirAll(filepath.Dir(tp), 0o755)
	os.WriteFile(tp, []byte(`{"type":"user"}`+"\n"), 0o600)
	script := `read line
echo '{"type":"control_response","response":{"subtype":"success","request_id":"tether-initialize","response":{}}}'
while read line; do
  echo '{"type":"system","subtype":"init","session_id":"` + renewed + `"}'
  echo '{"type":"result","subtype":"success","is_error":false,"num_turns":1,"result":"ok","session_id":"` + renewed + `"}'
done
`
	cfg := Config{Workspace: ws, ClaudeBin: fakeCLI(t, script), Logger: testLogger(t), StartTimeout: 5 * time.Second}
	rr := startRunner(t, cfg)
	rr.ready(t)
	if _, err := rr.r.Send(context.Background(), "go on", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the result", func() bool { return results(readLog(t, ws)) == 1 })
	waitFor(t, 5*time.Second, "the status", func() bool { return readStatus(t, ws).SessionID == renewed })
	st := readStatus(t, ws)
	if st.Resume.Outcome != ResumeResumed || st.Resume.PreviousID != old || st.Resume.SessionID != renewed {
		t.Errorf("resume %+v", st.Resume)
	}
	if id, _ := agent.OpenSessionIDs(ws).Get("main"); id != renewed {
		t.Errorf("session-ids.json holds %q", id)
	}
	if rs := findRunner(readLog(t, ws), "resume"); len(rs) != 2 || !strings.Contains(string(rs[1].Data), renewed) {
		t.Errorf("resume records %v", rs)
	}
}

// echoCLI answers the handshake and every message with an init line, an
// assistant text naming the message's turn and a result.
const echoCLI = `read line
echo '{"type":"control_response","response":{"subtype":"success","request_id":"tether-initialize","response":{}}}'
n=0
while read line; do
  n=$((n+1))
  echo '{"type":"system","subtype":"init","session_id":"cccccccc-0000-4000-8000-000000000003"}'
  echo '{"type":"assistant","message":{"id":"m'$n'","role":"assistant","content":[{"type":"text","text":"answer '$n'"}]}}'
  echo '{"type":"result","subtype":"success","is_error":false,"num_turns":1,"result":"answer '$n'","session_id":"cccccccc-0000-4000-8000-000000000003"}'
done
`

// TestRunIDTakenOnce: a client retrying POST /agui with the same run id
// (it lost the answer) gets the run's events again; the agent gets the
// message once.
func TestRunIDTakenOnce(t *testing.T) {
	ws := t.TempDir()
	rr := startRunner(t, Config{Workspace: ws, ClaudeBin: fakeCLI(t, echoCLI), Logger: testLogger(t)})
	rr.ready(t)
	hs := httptest.NewServer(Handler(rr.r, ""))
	defer hs.Close()
	var out1, out2 bytes.Buffer
	if err := SendRun(context.Background(), hs.URL, "", "main", "run-same", "hello", &out1); err != nil {
		t.Fatal(err)
	}
	if err := SendRun(context.Background(), hs.URL, "", "main", "run-same", "hello", &out2); err != nil {
		t.Fatal(err)
	}
	if out1.String() != out2.String() || !strings.Contains(out1.String(), "answer 1") {
		t.Errorf("retry output differs:\n%s\n---\n%s", out1.String(), out2.String())
	}
	n := 0
	for _, r := range readLog(t, ws) {
		if r.Kind == KindInput {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the message was sent %d times", n)
	}
}

// TestRedeliverUntakenMessage: the runner died after logging a client's
// message but before the CLI took it. The next runner delivers it itself,
// and the client's retry with the same run id does not deliver it again.
func TestRedeliverUntakenMessage(t *testing.T) {
	ws := t.TempDir()
	os.MkdirAll(filepath.Join(ws, StateDir), 0o755)
	l, _, err := OpenEventLog(filepath.Join(ws, EventLogFile))
	if err != nil {
		t.Fatal(err)
	}
	l.AppendRecord(Record{Turn: 1, Run: "run-lost", Kind: KindInput, Type: SourceUser, Data: mustJSON(inputData{Text: "lost message", RunID: "run-lost"})}, true)
	l.Close()
	rr := startRunner(t, Config{Workspace: ws, ClaudeBin: fakeCLI(t, echoCLI), Logger: testLogger(t)})
	rr.ready(t)
	waitFor(t, 10*time.Second, "the redelivered turn", func() bool { return results(readLog(t, ws)) == 1 })
	hs := httptest.NewServer(Handler(rr.r, ""))
	defer hs.Close()
	var out bytes.Buffer
	if err := SendRun(context.Background(), hs.URL, "", "main", "run-lost", "lost message", &out); err != nil {
		t.Fatal(err)
	}
	var inputs []string
	for _, r := range readLog(t, ws) {
		if r.Kind == KindInput {
			var d inputData
			json.Unmarshal(r.Data, &d)
			inputs = append(inputs, r.Type+":"+d.Text)
		}
	}
	if strings.Join(inputs, ",") != "user:lost message,redeliver:lost message" {
		t.Errorf("inputs %v, want the original and one redelivery", inputs)
	}
	if !strings.Contains(out.String(), "answer 1") {
		t.Errorf("the retry did not stream the redelivered run:\n%s", out.String())
	}
}
