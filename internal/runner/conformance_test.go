package runner

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ag-ui-protocol/ag-ui/sdks/community/go/pkg/core/events"

	"github.com/tether-dev/tether/test/modelserver"
)

// AGUIVersion is the version of @ag-ui/client and @ag-ui/core that
// hack/install-agui.sh installs. Keep in sync with it.
const AGUIVersion = "1.0.0"

// aguiDir returns the install of hack/install-agui.sh: $TETHER_AGUI_DIR,
// else under $TETHER_CACHE_DIR, $CACHE or ~/.cache/tether. Missing, the test
// is skipped, or fails when CI=true.
func aguiDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TETHER_AGUI_DIR")
	if dir == "" {
		dir = filepath.Join(modelserver.CacheDir(), "npm", "agui-"+AGUIVersion)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@ag-ui", "client")); err != nil {
		msg := "the AG-UI client is not installed at " + dir + "; run hack/install-agui.sh (make agui-client)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return dir
}

// aguiReport is what testdata/agui-check.cjs prints.
type aguiReport struct {
	Events   int      `json:"events"`
	Types    []string `json:"types"`
	Errors   []string `json:"errors"`
	Messages []struct {
		Role    string `json:"role"`
		Content any    `json:"content"`
	} `json:"messages"`
}

func aguiCheck(t *testing.T, dir string, args ...string) aguiReport {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("testdata", "agui-check.cjs"))
	if err != nil {
		t.Fatal(err)
	}
	// A client that never ends its stream must fail the test, not hang it.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{script}, args...)...)
	cmd.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(dir, "node_modules"), "SUPPRESS_TRANSFORMATION_WARNINGS=true")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node agui-check.cjs %s: %v (context: %v)\n%s", args[0], err, ctx.Err(), stderr.String())
	}
	var rep aguiReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("agui-check.cjs printed %q: %v", out, err)
	}
	return rep
}

// captureStream reads GET /agui/events (after lastID, "" for all) until an
// event whose data satisfies stop, and returns the raw bytes.
func captureStream(t *testing.T, url, token, lastID, query string, stop func(data []byte) bool) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/agui/events"+query, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /agui/events after %q: %s", lastID, resp.Status)
	}
	var raw bytes.Buffer
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadBytes('\n')
		raw.Write(line)
		if err != nil {
			t.Fatalf("GET /agui/events after %q: %v after %d bytes", lastID, err, raw.Len())
		}
		if d, ok := bytes.CutPrefix(line, []byte("data: ")); ok && stop(d) {
			raw.WriteString("\n")
			return raw.Bytes()
		}
	}
}

// endOf stops captureStream at the end (RUN_FINISHED or RUN_ERROR) of the
// run that follows RUN_STARTED of runID.
func endOf(runID string) func([]byte) bool {
	in := false
	return func(d []byte) bool {
		switch {
		case bytes.Contains(d, []byte(`"type":"RUN_STARTED"`)):
			in = bytes.Contains(d, []byte(`"runId":"`+runID+`"`))
		case in && (bytes.Contains(d, []byte(`"type":"RUN_FINISHED"`)) || bytes.Contains(d, []byte(`"type":"RUN_ERROR"`))):
			return true
		}
		return false
	}
}

func verifyStream(t *testing.T, dir, what string, raw []byte) aguiReport {
	t.Helper()
	f := filepath.Join(t.TempDir(), "stream.sse")
	if err := os.WriteFile(f, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	rep := aguiCheck(t, dir, "verify", f)
	for _, e := range rep.Errors {
		t.Errorf("%s: %s", what, e)
	}
	if t.Failed() {
		t.Logf("%s: %s", what, raw)
	}
	return rep
}

// TestAGUIConformance runs the runner's AG-UI streams through the official
// TypeScript client (@ag-ui/client's HttpAgent and verifyEvents,
// @ag-ui/core's schemas) with the real Claude Code CLI: a first life killed
// (runner, CLI and tool, SIGKILL) in the middle of a tool call; then, after
// the restart, the resume and its notice, a text turn and a turn with two
// text blocks around a tool call sent through HttpAgent, and a client that
// reconnects with Last-Event-ID in the middle of a slow turn. Every stream,
// the replay of the whole log included, must pass with no schema or
// verifyEvents error.
func TestAGUIConformance(t *testing.T) {
	dir := aguiDir(t)
	srv := modelserver.Start(t.Logf,
		modelserver.Step{Cue: "the long task", Reply: []modelserver.Block{modelserver.Text("working on it"), modelserver.Bash("echo started && sleep 30 && echo SLEPT-OK")}},
		modelserver.Step{Cue: "was interrupted", Reply: []modelserver.Block{modelserver.Text("noted the interruption")}},
		modelserver.Step{Cue: "say hello", Reply: []modelserver.Block{modelserver.Text("hello from the model")}},
		modelserver.Step{Cue: "use the tool", Reply: []modelserver.Block{modelserver.Text("first block"), modelserver.Bash("echo TOOL-RAN")}},
		modelserver.Step{Cue: "TOOL-RAN", Reply: []modelserver.Block{modelserver.Text("the tool ran")}},
		modelserver.Step{Cue: "a slow one", Reply: []modelserver.Block{modelserver.Text("starting the slow one"), modelserver.Bash("sleep 3 && echo SLOW-DONE")}},
		modelserver.Step{Cue: "SLOW-DONE", Reply: []modelserver.Block{modelserver.Text("the slow one is done")}},
	)
	t.Cleanup(srv.Close)
	ws := t.TempDir()

	// The first life: killed in the middle of the initial prompt's tool call.
	cfg := testConfig(t, srv, ws)
	cfg.InitialPrompt = "the long task"
	var out bytes.Buffer
	cmd := startChild(t, cfg, &out)
	waitFor(t, 30*time.Second, "the tool call to start", func() bool { return toolRunning(t, ws) })
	time.Sleep(300 * time.Millisecond)
	killGroup(cmd, ws)

	// The second life, serving AG-UI.
	rr := startRunner(t, testConfig(t, srv, ws))
	rr.ready(t)
	const token = "0123456789abcdef0123456789abcdef"
	hs := httptest.NewServer(NewHandler(rr.r, HTTPOptions{Token: token}))
	t.Cleanup(hs.Close)
	waitFor(t, 60*time.Second, "the notice's result", func() bool { return results(readLog(t, ws)) >= 1 })

	for _, turn := range []struct{ run, text, want string }{
		{"run-hello", "please say hello", "hello from the model"},
		{"run-tool", "now use the tool", "the tool ran"},
	} {
		rep := aguiCheck(t, dir, "run", hs.URL+"/agui", token, "thread-client", turn.run, turn.text)
		for _, e := range rep.Errors {
			t.Errorf("HttpAgent run %s: %s", turn.run, e)
		}
		if n := len(rep.Types); n == 0 || rep.Types[0] != "RUN_STARTED" || rep.Types[n-1] != "RUN_FINISHED" {
			t.Errorf("HttpAgent run %s: events %v, want RUN_STARTED ... RUN_FINISHED", turn.run, rep.Types)
		}
		js, _ := json.Marshal(rep.Messages)
		if !strings.Contains(string(js), turn.want) {
			t.Errorf("HttpAgent run %s: the agent's messages %s lack %q", turn.run, js, turn.want)
		}
	}
	// Two text blocks of one message stay two messages.
	rep := verifyStream(t, dir, "run-tool's replay", captureStream(t, hs.URL, token, "", "", endOf("run-tool")))
	if !contains(rep.Types, "TOOL_CALL_RESULT") {
		t.Errorf("the replay holds no tool result: %v", rep.Types)
	}

	// A client that reconnects in the middle of a slow turn, between two
	// deltas of the agent's first text message.
	sent := make(chan error, 1)
	go func() {
		_, err := rr.r.SendThread(context.Background(), "now a slow one", "run-slow", "thread-client")
		sent <- err
	}()
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	var lastID, cutMsg string
	waitFor(t, 30*time.Second, "the slow turn's tool call", func() bool {
		lastID, cutMsg = "", ""
		tr := NewTranslator("main")
		for _, rec := range readLog(t, ws) {
			for _, e := range tr.Record(rec) {
				if c, ok := e.Event.(*events.TextMessageContentEvent); ok && e.Run == "run-slow" && !strings.HasPrefix(c.MessageID, "user-") && lastID == "" {
					lastID, cutMsg = e.ID, c.MessageID
				}
			}
		}
		return lastID != ""
	})
	raw := captureStream(t, hs.URL, token, lastID, "", endOf("run-slow"))
	rep = verifyStream(t, dir, "reconnect after "+lastID, raw)
	if bytes.Contains(raw, []byte("id: "+lastID+"\n")) || !bytes.HasPrefix(raw, []byte(`data: {"type":"RUN_STARTED"`)) {
		t.Errorf("the reconnect after %s does not start with run-slow's RUN_STARTED, or repeats what the client had:\n%.600s", lastID, raw)
	}
	// The text streamed as deltas, and the one the point cut in two opens
	// again and goes on with the next delta.
	reopened := false
	for _, line := range bytes.Split(raw, []byte("\n")) {
		reopened = reopened || bytes.Contains(line, []byte(`"type":"TEXT_MESSAGE_START"`)) && bytes.Contains(line, []byte(`"messageId":"`+cutMsg+`"`))
	}
	if !reopened || !bytes.Contains(raw, []byte(`"messageId":"`+cutMsg+`","delta":"one"`)) {
		t.Errorf("the reconnect after %s does not reopen message %s and go on with its next delta:\n%.1500s", lastID, cutMsg, raw)
	}
	if !contains(rep.Types, "TOOL_CALL_START") {
		t.Errorf("the reconnect after %s lacks the slow turn's tool call: %v", lastID, rep.Types)
	}

	// The same reconnect asking for a snapshot: the conversation so far
	// (the message the point cuts in two left out), then the rest of the run.
	raw = captureStream(t, hs.URL, token, lastID, "?snapshot=1", endOf("run-slow"))
	rep = verifyStream(t, dir, "reconnect with ?snapshot=1 after "+lastID, raw)
	if len(rep.Types) < 3 || rep.Types[0] != "RUN_STARTED" || rep.Types[1] != "MESSAGES_SNAPSHOT" || rep.Types[2] != "STATE_SNAPSHOT" {
		t.Errorf("reconnect with ?snapshot=1: events %v, want RUN_STARTED MESSAGES_SNAPSHOT STATE_SNAPSHOT first", rep.Types)
	}
	// A snapshot replaces the client's messages and leaves out the one the
	// point cuts in two: it opens again with what it said so far.
	if !bytes.Contains(raw, []byte(`"messageId":"`+cutMsg+`","delta":"starting the slow "`)) {
		t.Errorf("reconnect with ?snapshot=1 after %s: message %s does not come back with its beginning:\n%.2000s", lastID, cutMsg, raw)
	}
	for _, want := range []string{`"content":"hello from the model"`, `"content":"please say hello"`, `"role":"tool"`, `"name":"Bash"`, `"restarts":1`} {
		if !bytes.Contains(raw, []byte(want)) {
			t.Errorf("reconnect with ?snapshot=1 lacks %s:\n%.3000s", want, raw)
		}
	}

	// A late client: the conversation and the state, then what comes live.
	raw = captureStream(t, hs.URL, token, "", "?snapshot=1", func(d []byte) bool {
		return bytes.Contains(d, []byte(`"type":"RUN_FINISHED"`)) && bytes.Contains(d, []byte(`"runId":"tether-connect-`))
	})
	rep = verifyStream(t, dir, "a late client with ?snapshot=1", raw)
	if strings.Join(rep.Types, " ") != "RUN_STARTED MESSAGES_SNAPSHOT STATE_SNAPSHOT RUN_FINISHED" {
		t.Errorf("a late client with ?snapshot=1: events %v", rep.Types)
	}
	for _, want := range []string{`"content":"the slow one is done"`, `"content":"now a slow one"`, `"phase":"ready"`} {
		if !bytes.Contains(raw, []byte(want)) {
			t.Errorf("a late client's snapshot lacks %s:\n%.3000s", want, raw)
		}
	}

	// The official client's connectAgent(), with the connect() HttpAgent
	// leaves out (TetherAgent in agui-check.cjs): the whole conversation.
	rep = aguiCheck(t, dir, "connect", hs.URL+"/agui", token)
	for _, e := range rep.Errors {
		t.Errorf("connectAgent: %s", e)
	}
	js, _ := json.Marshal(rep.Messages)
	for _, want := range []string{"please say hello", "hello from the model", "the slow one is done"} {
		if !strings.Contains(string(js), want) {
			t.Errorf("connectAgent: the agent's messages %s lack %q (events %v)", js, want, rep.Types)
		}
	}

	// The whole log: both lives, the kill, the restart, the resume.
	raw = captureStream(t, hs.URL, token, "", "", endOf("run-slow"))
	rep = verifyStream(t, dir, "the whole replay", raw)
	// The client's thread id, and what was said to the agent, are in it.
	for _, want := range []string{`"threadId":"thread-client","runId":"run-hello"`, `"role":"user"`, `"delta":"please say hello"`, `"code":"interrupted"`} {
		if !bytes.Contains(raw, []byte(want)) {
			t.Errorf("the whole replay lacks %s", want)
		}
	}
	// The model's reply streamed as deltas (modelserver.Deltas), and the
	// complete message after them added no second copy.
	for _, want := range []string{`"delta":"hello from the "`, `"delta":"model"`} {
		if !bytes.Contains(raw, []byte(want)) {
			t.Errorf("the whole replay lacks the delta %s", want)
		}
	}
	if bytes.Contains(raw, []byte(`"delta":"hello from the model"`)) {
		t.Errorf("the whole replay holds the streamed reply a second time, in one piece")
	}
	for _, want := range []string{"RUN_ERROR", "CUSTOM", "TOOL_CALL_START"} {
		if !contains(rep.Types, want) {
			t.Errorf("the whole replay holds no %s: %v", want, rep.Types)
		}
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
