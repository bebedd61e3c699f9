package runner

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMessagesSnapshotBounded: the conversation a snapshot rebuilds from the
// frame file holds every message, in order, with a long text cut at 64 KiB
// and a 2 MiB tool output at 16 KiB, each saying so; a text
// message the point cuts in two is left out.
func TestMessagesSnapshotBounded(t *testing.T) {
	l, _, err := OpenEventLog(filepath.Join(t.TempDir(), "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	long := strings.Repeat("word ", 30000) // 150 KB
	huge := strings.Repeat("x", 2<<20)
	lines := []struct{ kind, typ, data string }{
		{KindRunner, "started", `{"pid":1}`},
		{KindInput, SourceUser, `{"text":"list the files"}`},
		{KindCLI, "assistant", `{"type":"assistant","message":{"id":"m1","content":[{"type":"text","text":"` + long + `"}]}}`},
		{KindCLI, "assistant", `{"type":"assistant","message":{"id":"m1","content":[{"type":"tool_use","id":"tu1","name":"Bash","input":{"command":"cat big"}}]}}`},
		{KindCLI, "user", `{"type":"user","uuid":"u1","message":{"content":[{"type":"tool_result","tool_use_id":"tu1","content":"` + huge + `"}]}}`},
		{KindCLI, "assistant", `{"type":"assistant","message":{"id":"m2","content":[{"type":"text","text":"done"}]}}`},
	}
	for _, ln := range lines {
		if _, err := l.Append(1, ln.kind, ln.typ, json.RawMessage(ln.data), false); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	close(done)
	fl, err := openFrameLog(l, "main", t.TempDir(), done)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		fl.mu.Lock()
		n, ended := len(fl.recs), fl.ended
		fl.mu.Unlock()
		if n == len(lines) || ended || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	msgs, err := fl.messagesBefore(fl.size)
	if err != nil {
		t.Fatal(err)
	}
	var roles []string
	for _, m := range msgs {
		roles = append(roles, string(m.Role))
	}
	if got := strings.Join(roles, " "); got != "user assistant tool assistant" {
		t.Fatalf("roles %q, want user assistant tool assistant", got)
	}
	text, _ := msgs[1].Content.(string)
	if len(text) > maxSnapshotText+200 || !strings.HasPrefix(text, "word word") || !strings.Contains(text, "more bytes; replay the stream") {
		t.Errorf("the long text in the snapshot: %d bytes, ends %q", len(text), text[max(0, len(text)-100):])
	}
	if len(msgs[1].ToolCalls) != 1 || msgs[1].ToolCalls[0].ID != "tu1" || msgs[1].ToolCalls[0].Function.Arguments != `{"command":"cat big"}` {
		t.Errorf("the tool call: %+v", msgs[1].ToolCalls)
	}
	out, _ := msgs[2].Content.(string)
	if msgs[2].ToolCallID != "tu1" || len(out) > maxSnapshotTool+200 || !strings.HasPrefix(out, "xxxx") || !strings.Contains(out, "more bytes; replay the stream") {
		t.Errorf("the 2 MiB tool output in the snapshot: %d bytes, ends %q (tool call %q)", len(out), out[max(0, len(out)-100):], msgs[2].ToolCallID)
	}
	// Cut in two inside the last text message: it is left out.
	fl.mu.Lock()
	last := fl.recs[len(fl.recs)-1]
	mid := fl.eventOffset(last, 1) // after its TEXT_MESSAGE_START
	fl.mu.Unlock()
	msgs, err = fl.messagesBefore(mid)
	if err != nil || len(msgs) != 3 {
		t.Errorf("cut inside the last message: %d messages (%v), want 3", len(msgs), err)
	}
}
