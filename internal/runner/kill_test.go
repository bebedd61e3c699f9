package runner

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/agent"
	"github.com/tether-dev/tether/test/modelserver"
)

// checkIDInvariant is the acceptance rule after a SIGKILL: once the runner has
// seen an init line, session-ids.json exists, is valid JSON and holds that
// line's id; whenever the file exists at all it is valid and names the
// session whose transcript the CLI writes.
func checkIDInvariant(t *testing.T, ws string) (initSeen bool) {
	t.Helper()
	recs := readLog(t, ws)
	ids := initIDs(recs)
	data, err := os.ReadFile(filepath.Join(ws, agent.SessionIDsFile))
	if err != nil {
		if len(ids) > 0 {
			t.Fatalf("init line with id %s was logged but session-ids.json is missing: %v", ids[0], err)
		}
		return false
	}
	var m map[string]string
	if err := json.Unmarshal(data, &m); err != nil || m["main"] == "" {
		t.Fatalf("session-ids.json is torn or empty after SIGKILL: %q (%v)", data, err)
	}
	if len(ids) > 0 && m["main"] != ids[0] {
		t.Fatalf("session-ids.json holds %s, the init line said %s", m["main"], ids[0])
	}
	matches, _ := filepath.Glob(filepath.Join(ws, ".claude", "projects", agent.ProjectKey(ws), "*.jsonl"))
	for _, p := range matches {
		if id := strings.TrimSuffix(filepath.Base(p), ".jsonl"); id != m["main"] {
			t.Fatalf("the CLI writes transcript %s, session-ids.json holds %s", id, m["main"])
		}
	}
	return true
}

// TestKillDuringFirstTurn SIGKILLs the runner, the CLI and its tool 20 times at
// random points of a first turn that runs a 30-second tool call, checks the
// session-id file each time, and restarts every fourth killed session to check
// it resumes with the same id and without sending the initial prompt again.
func TestKillDuringFirstTurn(t *testing.T) {
	srv := modelserver.Start(nil,
		modelserver.Step{Cue: "the long task", Reply: []modelserver.Block{modelserver.Text("working"), modelserver.Bash("echo started && sleep 30 && echo SLEPT-OK")}},
		modelserver.Step{Cue: "was interrupted", Reply: []modelserver.Block{modelserver.Text("noted")}},
	)
	t.Cleanup(srv.Close)
	root := t.TempDir()
	var afterInit, inTool, restarts int
	start := time.Now()
	for i := range 20 {
		ws := filepath.Join(root, "ws"+string(rune('a'+i)))
		cfg := testConfig(t, srv, ws)
		cfg.InitialPrompt = "the long task"
		var out bytes.Buffer
		cmd := startChild(t, cfg, &out)
		// The kill moment is taken relative to the turn's start (the
		// input record), so a slow machine does not shift every kill
		// before the init line: every other kill lands in the 700ms
		// after the message is written (where the init line comes), the
		// rest anywhere in the first 3s of the turn (inside the tool
		// call), two during the CLI's start. The tool's 30 seconds cost
		// nothing: it dies with the rest.
		var delay time.Duration
		switch {
		case i < 2:
			delay = time.Duration(rand.IntN(300)) * time.Millisecond
			time.Sleep(delay)
		default:
			waitFor(t, 60*time.Second, "the turn to start", func() bool {
				for _, r := range readLog(t, ws) {
					if r.Kind == KindInput {
						return true
					}
				}
				return false
			})
			delay = time.Duration(rand.IntN(700)) * time.Millisecond
			if i%2 == 1 {
				delay = time.Duration(rand.IntN(3000)) * time.Millisecond
			}
			time.Sleep(delay)
		}
		killGroup(cmd, ws)
		seen := checkIDInvariant(t, ws)
		recs := readLog(t, ws)
		if seen {
			afterInit++
		}
		if hasToolUse(recs) {
			inTool++
		}
		t.Logf("kill %2d %v into the turn: init seen %v, records %d", i, delay, seen, len(recs))
		if seen && i%4 == 3 {
			restarts++
			checkRestart(t, srv, cfg, ws)
		}
	}
	t.Logf("20 kills and %d restarts in %v: %d after init, %d inside the tool call", restarts, time.Since(start).Round(time.Millisecond), afterInit, inTool)
	if afterInit < 10 || inTool < 5 {
		t.Errorf("too few kills landed after init (%d) or inside the tool call (%d) to mean something", afterInit, inTool)
	}
}

// checkRestart starts a runner on a killed session: with a conversation in
// its transcript it must resume the same id; without a transcript it must
// report failed; the initial prompt is never sent twice.
func checkRestart(t *testing.T, srv *modelserver.Server, cfg Config, ws string) {
	t.Helper()
	id := storedID(t, ws)
	data, terr := os.ReadFile(transcriptOf(ws, id))
	// The CLI writes queue bookkeeping lines before the user's message: a
	// kill between them leaves a transcript with no conversation, which
	// the CLI may refuse to resume (then failed is the right report).
	conversation := bytes.Contains(data, []byte(`"type":"user"`))
	cfg.Logger = testLogger(t)
	rr := startRunner(t, cfg)
	rr.ready(t)
	st := rr.r.Status()
	switch {
	case conversation && (st.Resume.Outcome != ResumeResumed || st.Resume.SessionID != id):
		t.Fatalf("restart of %s: resume %+v, want resumed %s", ws, st.Resume, id)
	case terr != nil && st.Resume.Outcome != ResumeFailed:
		t.Fatalf("restart of %s without a transcript: resume %+v, want failed", ws, st.Resume)
	}
	if err := rr.stop(t); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range readLog(t, ws) {
		if r.Kind == KindInput && r.Type == SourceInitial {
			n++
		}
	}
	if n != 1 {
		t.Errorf("restart of %s: the initial prompt was sent %d times", ws, n)
	}
	t.Logf("restart of %s: %s (transcript present: %v, with conversation: %v)", filepath.Base(ws), st.Resume.Outcome, terr == nil, conversation)
}

// toolRunning reports whether the CLI has started the tool call: its
// tool_use is in the event log and in the CLI's own transcript, which the
// CLI writes before it runs the tool. (With partial messages the event log
// can hold the tool_use before the transcript does: a kill then would find
// a transcript without the turn.)
func toolRunning(t *testing.T, ws string) bool {
	if !hasToolUse(readLog(t, ws)) {
		return false
	}
	files, _ := filepath.Glob(filepath.Join(ws, ClaudeDir, "projects", "*", "*.jsonl"))
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && bytes.Contains(b, []byte(`"tool_use"`)) {
			return true
		}
	}
	return false
}

func hasToolUse(recs []Record) bool {
	for _, r := range recs {
		if r.Kind == KindCLI && r.Type == agent.TypeAssistant && bytes.Contains(r.Data, []byte(`"tool_use"`)) {
			return true
		}
	}
	return false
}

// TestRestartAfterKillInToolCall kills the runner while the first turn is
// inside a 30-second tool call, restarts it and checks the conversation goes
// on: same session id, the earlier turn in the history the model receives,
// the initial prompt not sent again, the agent told its turn was interrupted.
func TestRestartAfterKillInToolCall(t *testing.T) {
	srv := modelserver.Start(t.Logf,
		modelserver.Step{Cue: "the long task", Reply: []modelserver.Block{modelserver.Text("working on it"), modelserver.Bash("echo started && sleep 30 && echo SLEPT-OK")}},
		modelserver.Step{Cue: "was interrupted", Reply: []modelserver.Block{modelserver.Text("noted the interruption")}},
	)
	t.Cleanup(srv.Close)
	ws := t.TempDir()
	cfg := testConfig(t, srv, ws)
	cfg.InitialPrompt = "the long task"
	var out bytes.Buffer
	cmd := startChild(t, cfg, &out)
	waitFor(t, 30*time.Second, "the tool call to start", func() bool { return toolRunning(t, ws) })
	time.Sleep(300 * time.Millisecond) // inside the sleep
	killGroup(cmd, ws)
	if !checkIDInvariant(t, ws) {
		t.Fatalf("no init seen before the kill; runner output:\n%s", out.String())
	}
	id := storedID(t, ws)
	before := len(srv.AgentRequests())

	rr := startRunner(t, testConfig(t, srv, ws)) // no initial prompt configured: the marker must suffice anyway
	rr.ready(t)
	st := rr.r.Status()
	if st.Resume.Outcome != ResumeResumed || st.Resume.SessionID != id || st.Resume.Interrupted != 1 {
		t.Fatalf("resume status %+v, want resumed %s with turn 1 interrupted", st.Resume, id)
	}
	waitFor(t, 30*time.Second, "the notice's result", func() bool { return results(readLog(t, ws)) >= 1 })
	recs := readLog(t, ws)
	if ids := initIDs(recs); ids[len(ids)-1] != id {
		t.Errorf("resumed CLI reports id %s, want %s", ids[len(ids)-1], id)
	}
	reqs := srv.AgentRequests()[before:]
	if len(reqs) == 0 {
		t.Fatal("the resumed CLI sent no request")
	}
	h := reqs[0].History()
	for _, want := range []string{"the long task", "working on it", "sleep 30", "was interrupted"} {
		if !strings.Contains(h, want) {
			t.Errorf("the model did not receive %q after resume; history:\n%s", want, h)
		}
	}
	if n := strings.Count(h, "the long task"); n != 1 {
		t.Errorf("the initial prompt appears %d times in the history, want once:\n%s", n, h)
	}
	var inputs []string
	for _, r := range recs {
		if r.Kind == KindInput {
			inputs = append(inputs, r.Type)
		}
	}
	if strings.Join(inputs, ",") != "initial,notice" {
		t.Errorf("inputs over both lives = %v, want initial then notice", inputs)
	}
	if len(findRunner(recs, "turn_interrupted")) != 1 || len(findRunner(recs, "resume")) != 1 {
		t.Errorf("missing turn_interrupted or resume record")
	}
}
