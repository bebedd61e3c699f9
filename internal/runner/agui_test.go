package runner

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestTranslate(t *testing.T) {
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	rec := func(seq int64, kind, typ, data string) Record {
		return Record{Seq: seq, Time: at, Turn: 3, Run: "run-c", Kind: kind, Type: typ, Data: json.RawMessage(data)}
	}
	for _, tc := range []struct {
		rec   Record
		types string
		has   string
	}{
		{rec(1, KindInput, SourceUser, `{"text":"hi","run_id":"run-c"}`), "RUN_STARTED", `"runId":"run-c"`},
		{rec(2, KindInput, SourceNotice, `{"text":"you were interrupted"}`), "RUN_STARTED CUSTOM", "you were interrupted"},
		{rec(3, KindCLI, "system", `{"type":"system","subtype":"init","session_id":"s1"}`), "CUSTOM", `"session_id":"s1"`},
		{rec(4, KindCLI, "assistant", `{"type":"assistant","message":{"id":"m1","content":[{"type":"text","text":"hello"},{"type":"tool_use","id":"tu1","name":"Bash","input":{"command":"ls"}},{"type":"thinking","thinking":"hmm"}]}}`),
			"TEXT_MESSAGE_START TEXT_MESSAGE_CONTENT TEXT_MESSAGE_END TOOL_CALL_START TOOL_CALL_ARGS TOOL_CALL_END RAW", `"toolCallName":"Bash"`},
		{rec(5, KindCLI, "user", `{"type":"user","uuid":"u1","message":{"content":[{"type":"tool_result","tool_use_id":"tu1","content":[{"type":"text","text":"a.txt"}]}]}}`), "TOOL_CALL_RESULT", `"content":"a.txt"`},
		{rec(6, KindCLI, "result", `{"type":"result","subtype":"success","is_error":false,"result":"done","session_id":"s1"}`), "RUN_FINISHED", `"runId":"run-c"`},
		{rec(7, KindCLI, "result", `{"type":"result","subtype":"error_during_execution","is_error":true,"errors":["boom"]}`), "RUN_ERROR", `"message":"boom"`},
		{rec(8, KindCLI, "invalid", `"not json at all"`), "RAW", "not json at all"},
		{rec(9, KindCLI, "rate_limit_event", `{"type":"rate_limit_event","x":1}`), "RAW", "rate_limit_event"},
		{rec(10, KindRunner, "resume", `{"outcome":"failed","previous_id":"s0","reason":"transcript missing"}`), "CUSTOM", `"outcome":"failed"`},
		{rec(11, KindRunner, "turn_interrupted", `{"turn":2,"run_id":"run-b"}`), "CUSTOM RUN_ERROR", `"runId":"run-b"`},
		{rec(12, KindRunner, "cli_exit", `{"exit":"exit status 7","turn_open":true,"run_id":"run-c"}`), "RUN_ERROR", "exit status 7"},
		{rec(13, KindRunner, "stopped", `{"exit":"exit status 0","turn_open":false}`), "CUSTOM", CustomStopped},
	} {
		evs := Translate(tc.rec, "main")
		var types []string
		var all strings.Builder
		for i, e := range evs {
			types = append(types, string(e.Event.Type()))
			if want := itoa64(tc.rec.Seq) + ":" + itoa64(int64(i)); e.ID != want {
				t.Errorf("record %d event %d id %q, want %q", tc.rec.Seq, i, e.ID, want)
			}
			j, err := e.Event.ToJSON()
			if err != nil {
				t.Errorf("record %d: %v", tc.rec.Seq, err)
			}
			if !strings.Contains(string(j), `"timestamp":`+itoa64(at.UnixMilli())) {
				t.Errorf("record %d: timestamp is not the record's: %s", tc.rec.Seq, j)
			}
			all.Write(j)
		}
		if got := strings.Join(types, " "); got != tc.types {
			t.Errorf("record %d (%s/%s): types %q, want %q", tc.rec.Seq, tc.rec.Kind, tc.rec.Type, got, tc.types)
		}
		if !strings.Contains(all.String(), tc.has) {
			t.Errorf("record %d: events %s lack %q", tc.rec.Seq, all.String(), tc.has)
		}
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
func FuzzTranslate(f *testing.F) {
	f.Add("cli", "assistant", `{"type":"assistant","message":{"content":[{"type":"tool_use","input":null}]}}`)
	f.Add("cli", "result", `{"type":"result","is_error":true}`)
	f.Add("runner", "turn_interrupted", `{"run_id":7}`)
	f.Add("input", "user", `{"text":5}`)
	f.Add("cli", "invalid", `"x"`)
	f.Fuzz(func(t *testing.T, kind, typ, data string) {
		if !json.Valid([]byte(data)) {
			return // the log only ever holds JSON in Data
		}
		for _, e := range Translate(Record{Seq: 1, Kind: kind, Type: typ, Data: json.RawMessage(data)}, "main") {
			if _, err := e.Event.ToJSON(); err != nil {
				t.Fatalf("event does not serialize: %v", err)
			}
		}
	})
}
