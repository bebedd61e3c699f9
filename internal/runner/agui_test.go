package runner

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// checkProtocol checks evs as @ag-ui/client's verifyEvents does, and what
// it leaves to the schema and to a page: runs one after another, each
// opened by RUN_STARTED and ended by exactly one RUN_FINISHED or RUN_ERROR,
// nothing between them; text messages and tool calls started before their
// content and ended once; message ids used by one message; a tool call's
// parent a message that exists; RUN_ERROR without the runId the schema
// lacks and messages without Go's "<nil>"; event ids unique and increasing.
func checkProtocol(evs []Event) error {
	run := ""
	started := false
	openText, openTool := map[string]bool{}, map[string]bool{}
	messages := map[string]bool{}
	lastSeq, lastK := int64(0), -1
	for i, e := range evs {
		typ := string(e.Event.Type())
		j, err := e.Event.ToJSON()
		if err != nil {
			return fmt.Errorf("event %d (%s) does not serialize: %v", i, typ, err)
		}
		js := string(j)
		if strings.Contains(js, "<nil>") {
			return fmt.Errorf("event %d (%s) says <nil>: %s", i, typ, js)
		}
		var seq int64
		var k int
		if _, err := fmt.Sscanf(e.ID, "%d:%d", &seq, &k); err != nil || seq < lastSeq || (seq == lastSeq && k <= lastK) {
			return fmt.Errorf("event %d id %q after %d:%d", i, e.ID, lastSeq, lastK)
		}
		lastSeq, lastK = seq, k
		var f struct {
			RunID, ThreadID, MessageID, ToolCallID, ParentMessageID string
			Role                                                    string
		}
		json.Unmarshal(j, &f)
		if !started && typ != "RUN_STARTED" {
			return fmt.Errorf("event %d: %s before any RUN_STARTED", i, typ)
		}
		started = true
		if run == "" && typ != "RUN_STARTED" {
			return fmt.Errorf("event %d: %s between runs", i, typ)
		}
		if e.Run != run && typ != "RUN_STARTED" {
			return fmt.Errorf("event %d: %s says run %q inside run %q", i, typ, e.Run, run)
		}
		switch typ {
		case "RUN_STARTED":
			if run != "" {
				return fmt.Errorf("event %d: RUN_STARTED %s while run %s is open", i, f.RunID, run)
			}
			if f.RunID == "" || f.ThreadID == "" || e.Run != f.RunID {
				return fmt.Errorf("event %d: RUN_STARTED without run or thread id: %s", i, js)
			}
			run = f.RunID
		case "RUN_FINISHED", "RUN_ERROR":
			if len(openText) > 0 || len(openTool) > 0 {
				return fmt.Errorf("event %d: %s with messages or tool calls open", i, typ)
			}
			if typ == "RUN_ERROR" && strings.Contains(js, `"runId"`) {
				return fmt.Errorf("event %d: RUN_ERROR carries a runId: %s", i, js)
			}
			if typ == "RUN_FINISHED" && f.RunID != run {
				return fmt.Errorf("event %d: RUN_FINISHED of %s ends run %s", i, f.RunID, run)
			}
			run = ""
		case "TEXT_MESSAGE_START":
			if messages[f.MessageID] {
				return fmt.Errorf("event %d: message id %s used twice", i, f.MessageID)
			}
			messages[f.MessageID], openText[f.MessageID] = true, true
		case "TEXT_MESSAGE_CONTENT", "TEXT_MESSAGE_END":
			if !openText[f.MessageID] {
				return fmt.Errorf("event %d: %s of message %s, which is not open", i, typ, f.MessageID)
			}
			if typ == "TEXT_MESSAGE_END" {
				delete(openText, f.MessageID)
			}
		case "TOOL_CALL_START":
			if f.ParentMessageID != "" && !messages[f.ParentMessageID] {
				return fmt.Errorf("event %d: tool call %s names parent %s, which no message has", i, f.ToolCallID, f.ParentMessageID)
			}
			openTool[f.ToolCallID] = true
		case "TOOL_CALL_ARGS", "TOOL_CALL_END":
			if !openTool[f.ToolCallID] {
				return fmt.Errorf("event %d: %s of tool call %s, which is not open", i, typ, f.ToolCallID)
			}
			if typ == "TOOL_CALL_END" {
				delete(openTool, f.ToolCallID)
			}
		}
	}
	return nil
}

func typesOf(evs []Event) string {
	var ts []string
	for _, e := range evs {
		ts = append(ts, string(e.Event.Type()))
	}
	return strings.Join(ts, " ")
}

// TestTranslate runs a log through one Translator: two turns, the second
// with two text blocks and a tool call, a runner restart in the middle of
// a third, the resume and its notice, then a stop between turns.
func TestTranslate(t *testing.T) {
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	var seq int64
	rec := func(turn int64, run, kind, typ, data string) Record {
		seq++
		return Record{Seq: seq, Time: at, Turn: turn, Run: run, Kind: kind, Type: typ, Data: json.RawMessage(data)}
	}
	steps := []struct {
		rec   Record
		types string
		has   string
	}{
		{rec(0, "", KindRunner, "started", `{"pid":1}`), "RUN_STARTED CUSTOM RUN_FINISHED", `"runId":"tether-1"`},
		{rec(1, "run-a", KindInput, SourceUser, `{"text":"hi","run_id":"run-a","thread":"t-client"}`), "RUN_STARTED TEXT_MESSAGE_START TEXT_MESSAGE_CONTENT TEXT_MESSAGE_END", `"threadId":"t-client"`},
		{rec(1, "run-a", KindCLI, "system", `{"type":"system","subtype":"init","session_id":"s1"}`), "CUSTOM", `"session_id":"s1"`},
		{rec(1, "run-a", KindCLI, "assistant", `{"type":"assistant","message":{"id":"m1","content":[{"type":"text","text":"hello"}]}}`), "TEXT_MESSAGE_START TEXT_MESSAGE_CONTENT TEXT_MESSAGE_END", `"delta":"hello"`},
		{rec(1, "run-a", KindCLI, "result", `{"type":"result","subtype":"success","is_error":false,"result":"done","session_id":"s1"}`), "RUN_FINISHED", `"threadId":"t-client"`},
		{rec(2, "turn-2", KindInput, SourceUser, `{"text":"list the files"}`), "RUN_STARTED TEXT_MESSAGE_START TEXT_MESSAGE_CONTENT TEXT_MESSAGE_END", `"threadId":"main"`},
		// The CLI prints each block of message m2 as a line of its own.
		{rec(2, "turn-2", KindCLI, "assistant", `{"type":"assistant","message":{"id":"m2","content":[{"type":"text","text":"first"}]}}`), "TEXT_MESSAGE_START TEXT_MESSAGE_CONTENT TEXT_MESSAGE_END", `"messageId":"m2.7.0"`},
		{rec(2, "turn-2", KindCLI, "assistant", `{"type":"assistant","message":{"id":"m2","content":[{"type":"text","text":"second"}]}}`), "TEXT_MESSAGE_START TEXT_MESSAGE_CONTENT TEXT_MESSAGE_END", `"messageId":"m2.8.0"`},
		{rec(2, "turn-2", KindCLI, "assistant", `{"type":"assistant","message":{"id":"m2","content":[{"type":"tool_use","id":"tu1","name":"Bash","input":{"command":"ls"}},{"type":"thinking","thinking":"hmm"}]}}`),
			"TOOL_CALL_START TOOL_CALL_ARGS TOOL_CALL_END RAW", `"parentMessageId":"m2.8.0"`},
		{rec(2, "turn-2", KindCLI, "user", `{"type":"user","uuid":"u1","message":{"content":[{"type":"tool_result","tool_use_id":"tu1","content":[{"type":"text","text":"a.txt"}]}]}}`), "TOOL_CALL_RESULT", `"content":"a.txt"`},
		{rec(2, "turn-2", KindCLI, "result", `{"type":"result","subtype":"error_during_execution","is_error":true,"errors":["boom"]}`), "RUN_ERROR", `"message":"boom"`},
		{rec(3, "run-c", KindInput, SourceUser, `{"text":"the long task","run_id":"run-c"}`), "RUN_STARTED TEXT_MESSAGE_START TEXT_MESSAGE_CONTENT TEXT_MESSAGE_END", `"runId":"run-c"`},
		{rec(3, "run-c", KindCLI, "assistant", `{"type":"assistant","message":{"id":"m3","content":[{"type":"tool_use","id":"tu2","name":"Bash","input":{"command":"sleep 30"}}]}}`), "TOOL_CALL_START TOOL_CALL_ARGS TOOL_CALL_END", `"toolCallName":"Bash"`},
		{rec(3, "run-c", KindCLI, "invalid", `"not json at all"`), "RAW", "not json at all"},
		// The runner was killed: a new one starts and says so.
		{rec(3, "run-c", KindRunner, "started", `{"pid":2}`), "CUSTOM RUN_ERROR RUN_STARTED CUSTOM RUN_FINISHED", `"code":"interrupted"`},
		{rec(3, "run-c", KindRunner, "resume", `{"outcome":"resumed","session_id":"s1","interrupted":3}`), "RUN_STARTED CUSTOM RUN_FINISHED", `"outcome":"resumed"`},
		{rec(3, "run-c", KindRunner, "turn_interrupted", `{"turn":3,"run_id":"run-c"}`), "RUN_STARTED CUSTOM RUN_FINISHED", `"run_id":"run-c"`},
		{rec(4, "turn-4", KindInput, SourceNotice, `{"text":"you were interrupted"}`), "RUN_STARTED TEXT_MESSAGE_START TEXT_MESSAGE_CONTENT TEXT_MESSAGE_END CUSTOM", `"source":"notice"`},
		{rec(4, "turn-4", KindCLI, "rate_limit_event", `{"type":"rate_limit_event","x":1}`), "RAW", "rate_limit_event"},
		{rec(4, "turn-4", KindRunner, "cli_exit", `{"exit":"signal: killed","turn_open":true,"run_id":"turn-4"}`), "CUSTOM RUN_ERROR", `"message":"the agent CLI exited during the turn (signal: killed)"`},
		// What the runner reports about the dead turn after its error: a run of its own.
		{rec(4, "turn-4", KindRunner, "runner_failed", `{"error":"the agent CLI exited","turn_open":true,"run_id":"turn-4"}`), "RUN_STARTED CUSTOM RUN_FINISHED", `"name":"tether.runner_failed"`},
		{rec(4, "turn-4", KindRunner, "stopped", `{"exit":"exit status 0","turn_open":false}`), "RUN_STARTED CUSTOM RUN_FINISHED", CustomStopped},
	}
	tr := NewTranslator("main")
	var all []Event
	for _, st := range steps {
		evs := tr.Record(st.rec)
		var js strings.Builder
		for i, e := range evs {
			if want := itoa64(st.rec.Seq) + ":" + itoa64(int64(i)); e.ID != want {
				t.Errorf("record %d event %d id %q, want %q", st.rec.Seq, i, e.ID, want)
			}
			j, _ := e.Event.ToJSON()
			if !strings.Contains(string(j), `"timestamp":`+itoa64(at.UnixMilli())) {
				t.Errorf("record %d: timestamp is not the record's: %s", st.rec.Seq, j)
			}
			js.Write(j)
		}
		if got := typesOf(evs); got != st.types {
			t.Errorf("record %d (%s/%s): types %q, want %q", st.rec.Seq, st.rec.Kind, st.rec.Type, got, st.types)
		}
		if !strings.Contains(js.String(), st.has) {
			t.Errorf("record %d: events %s lack %q", st.rec.Seq, js.String(), st.has)
		}
		all = append(all, evs...)
	}
	if err := checkProtocol(all); err != nil {
		t.Error(err)
	}
}

// TestTranslateStreamed runs the CLI's partial messages through a
// Translator: a text block streams as deltas into one text message, the
// complete message after it adds no second copy, a tool call of the same
// message has the streamed text as its parent, and a runner restart in the
// middle of a streamed block ends it before the run's error.
func TestTranslateStreamed(t *testing.T) {
	at := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	var seq int64
	rec := func(turn int64, kind, typ, data string) Record {
		seq++
		return Record{Seq: seq, Time: at, Turn: turn, Run: "r" + itoa64(turn), Kind: kind, Type: typ, Data: json.RawMessage(data)}
	}
	se := func(turn int64, event string) Record {
		return rec(turn, KindCLI, "stream_event", `{"type":"stream_event","session_id":"s1","event":`+event+`}`)
	}
	steps := []struct {
		rec   Record
		types string
		has   string
	}{
		{rec(1, KindInput, SourceUser, `{"text":"hi","run_id":"r1"}`), "RUN_STARTED TEXT_MESSAGE_START TEXT_MESSAGE_CONTENT TEXT_MESSAGE_END", `"runId":"r1"`},
		{se(1, `{"type":"message_start","message":{"id":"m1","content":[]}}`), "", ""},
		{se(1, `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`), "TEXT_MESSAGE_START", `"messageId":"m1.3.s"`},
		{se(1, `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"one two three "}}`), "TEXT_MESSAGE_CONTENT", `"delta":"one two three "`},
		{se(1, `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""}}`), "", ""},
		{se(1, `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"four"}}`), "TEXT_MESSAGE_CONTENT", `"delta":"four"`},
		{se(1, `{"type":"content_block_stop","index":0}`), "TEXT_MESSAGE_END", `"messageId":"m1.3.s"`},
		{rec(1, KindCLI, "assistant", `{"type":"assistant","message":{"id":"m1","content":[{"type":"text","text":"one two three four"}]}}`), "", ""},
		{se(1, `{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"tu1","name":"Bash","input":{}}}`), "", ""},
		{se(1, `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{}"}}`), "", ""},
		{se(1, `{"type":"content_block_stop","index":1}`), "", ""},
		{rec(1, KindCLI, "assistant", `{"type":"assistant","message":{"id":"m1","content":[{"type":"tool_use","id":"tu1","name":"Bash","input":{"command":"ls"}}]}}`), "TOOL_CALL_START TOOL_CALL_ARGS TOOL_CALL_END", `"parentMessageId":"m1.3.s"`},
		{se(1, `{"type":"message_stop"}`), "", ""},
		{rec(1, KindCLI, "result", `{"type":"result","subtype":"success","is_error":false,"result":"done"}`), "RUN_FINISHED", `"runId":"r1"`},
		{rec(2, KindInput, SourceUser, `{"text":"more","run_id":"r2"}`), "RUN_STARTED TEXT_MESSAGE_START TEXT_MESSAGE_CONTENT TEXT_MESSAGE_END", `"runId":"r2"`},
		{se(2, `{"type":"message_start","message":{"id":"m2","content":[]}}`), "", ""},
		{se(2, `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":"half"}}`), "TEXT_MESSAGE_START TEXT_MESSAGE_CONTENT", `"delta":"half"`},
		// The runner was killed in the middle of the block.
		{rec(2, KindRunner, "started", `{"pid":2}`), "CUSTOM TEXT_MESSAGE_END RUN_ERROR RUN_STARTED CUSTOM RUN_FINISHED", `"code":"interrupted"`},
		// A partial message between runs has nothing to stream into.
		{se(2, `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":"late"}}`), "", ""},
	}
	tr := NewTranslator("main")
	var all []Event
	for _, st := range steps {
		evs := tr.Record(st.rec)
		if got := typesOf(evs); got != st.types {
			t.Errorf("record %d (%s): types %q, want %q", st.rec.Seq, st.rec.Data, got, st.types)
		}
		var js strings.Builder
		for _, e := range evs {
			j, _ := e.Event.ToJSON()
			js.Write(j)
		}
		if !strings.Contains(js.String(), st.has) {
			t.Errorf("record %d: events %s lack %q", st.rec.Seq, js.String(), st.has)
		}
		all = append(all, evs...)
	}
	if err := checkProtocol(all); err != nil {
		t.Error(err)
	}
}

// TestTranslateStreamedEarlyComplete: the complete message may come before
// the streamed block's end; its text is still not sent twice.
func TestTranslateStreamedEarlyComplete(t *testing.T) {
	var seq int64
	rec := func(kind, typ, data string) Record {
		seq++
		return Record{Seq: seq, Turn: 1, Run: "r1", Kind: kind, Type: typ, Data: json.RawMessage(data)}
	}
	se := func(event string) Record {
		return rec(KindCLI, "stream_event", `{"type":"stream_event","event":`+event+`}`)
	}
	tr := NewTranslator("main")
	var all []Event
	for _, r := range []Record{
		rec(KindInput, SourceUser, `{"text":"hi","run_id":"r1"}`),
		se(`{"type":"message_start","message":{"id":"m1"}}`),
		se(`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`),
		se(`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"abc "}}`),
		rec(KindCLI, "assistant", `{"type":"assistant","message":{"id":"m1","content":[{"type":"text","text":"abc def"}]}}`),
		se(`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"def"}}`),
		se(`{"type":"content_block_stop","index":0}`),
		rec(KindCLI, "assistant", `{"type":"assistant","message":{"id":"m1","content":[{"type":"text","text":"not streamed"}]}}`),
		rec(KindCLI, "result", `{"type":"result","subtype":"success","is_error":false,"result":"done"}`),
	} {
		all = append(all, tr.Record(r)...)
	}
	if err := checkProtocol(all); err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, e := range all {
		if c, ok := e.Event.(interface{ ToJSON() ([]byte, error) }); ok {
			j, _ := c.ToJSON()
			text.Write(j)
		}
	}
	js := text.String()
	if strings.Count(js, `"delta":"abc def"`) != 0 || strings.Count(js, `"delta":"abc "`) != 1 || strings.Count(js, `"delta":"not streamed"`) != 1 {
		t.Errorf("events %s", js)
	}
	if got := typesOf(all); strings.Count(got, "TEXT_MESSAGE_START") != 3 {
		t.Errorf("want the user's, the streamed and the unstreamed text messages: %s", got)
	}
}

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }

func TestParseEventID(t *testing.T) {
	for _, tc := range []struct {
		id        string
		seq       int64
		next      int
		wantError bool
	}{
		{"", 0, 0, false}, {"7", 8, 0, false}, {"7:0", 7, 1, false}, {"7:2", 7, 3, false},
		{"x", 0, 0, true}, {"7:x", 0, 0, true}, {"-1:0", 0, 0, true},
	} {
		seq, next, err := parseEventID(tc.id)
		if (err != nil) != tc.wantError || (err == nil && (seq != tc.seq || next != tc.next)) {
			t.Errorf("parseEventID(%q) = %d, %d, %v", tc.id, seq, next, err)
		}
	}
}

// FuzzTranslate: whatever the CLI printed (and the log kept), translating it
// never panics and every event serializes.
// FuzzTranslate feeds three arbitrary records through one Translator:
// whatever the log holds, the events serialize and form valid runs.
func FuzzTranslate(f *testing.F) {
	f.Add("cli", "assistant", `{"type":"assistant","message":{"content":[{"type":"tool_use","input":null}]}}`, "runner", "stopped", `{"turn_open":true}`)
	f.Add("cli", "result", `{"type":"result","is_error":true}`, "cli", "result", `{"type":"result"}`)
	f.Add("runner", "turn_interrupted", `{"run_id":7}`, "runner", "started", `{}`)
	f.Add("input", "user", `{"text":5}`, "input", "notice", `{"text":"x","run_id":"r"}`)
	f.Add("cli", "invalid", `"x"`, "runner", "cli_exit", `{"exit":null,"turn_open":true}`)
	f.Fuzz(func(t *testing.T, kind, typ, data, kind2, typ2, data2 string) {
		if !json.Valid([]byte(data)) || !json.Valid([]byte(data2)) {
			return // the log only ever holds JSON in Data
		}
		tr := NewTranslator("main")
		var evs []Event
		for i, r := range []Record{
			{Seq: 1, Kind: KindInput, Type: SourceUser, Data: json.RawMessage(`{"text":"go"}`)},
			{Seq: 2, Turn: 1, Kind: kind, Type: typ, Data: json.RawMessage(data)},
			{Seq: 3, Turn: 1, Kind: kind2, Type: typ2, Data: json.RawMessage(data2)},
		} {
			if i > 0 && r.Kind == KindInput {
				r.Turn = 2
			}
			evs = append(evs, tr.Record(r)...)
		}
		// A trailing open run is a turn still in flight.
		if err := checkProtocol(evs); err != nil {
			t.Fatal(err)
		}
	})
}
