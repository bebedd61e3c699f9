package agent

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// Lines as printed by Claude Code 2.1.328 (shortened where long), the shapes
// the parser must keep decoding.
var cliLines = []string{
	`{"type":"system","subtype":"init","cwd":"/w","session_id":"0f4bd87c-9f6d-4c65-a372-d2dc19190827","tools":["Bash"],"model":"claude-opus-5-5","permissionMode":"default","uuid":"u1"}`,
	`{"type":"assistant","message":{"content":[{"text":"running","type":"text"}],"id":"msg_0002","model":"claude-opus-5-5","role":"assistant","stop_reason":null},"parent_tool_use_id":null,"session_id":"0f4bd87c","uuid":"u2"}`,
	`{"type":"assistant","message":{"content":[{"id":"toolu_0002_1","input":{"command":"echo hi","description":"scripted"},"name":"Bash","type":"tool_use"}],"role":"assistant"},"parent_tool_use_id":null,"session_id":"0f4bd87c"}`,
	`{"type":"user","message":{"content":[{"content":"BASH-OK","is_error":false,"tool_use_id":"toolu_0002_1","type":"tool_result"}],"role":"user"},"parent_tool_use_id":null,"session_id":"0f4bd87c"}`,
	`{"type":"result","subtype":"success","is_error":false,"num_turns":2,"result":"file made","session_id":"0f4bd87c","total_cost_usd":0.00028,"duration_ms":1379}`,
	`{"type":"result","subtype":"error_during_execution","is_error":true,"num_turns":0,"errors":["No conversation found with session ID: 1111"],"session_id":"1111","total_cost_usd":0}`,
	`{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"he"}},"session_id":"0f4bd87c"}`,
}

func TestParseLineCLIShapes(t *testing.T) {
	var evs []Event
	for _, l := range cliLines {
		ev, err := ParseLine([]byte(l + "\n"))
		if err != nil {
			t.Fatalf("ParseLine(%s): %v", l, err)
		}
		if string(ev.Raw) != l {
			t.Errorf("Raw = %q, want the line without newline", ev.Raw)
		}
		if !ev.Known() {
			t.Errorf("type %q not known", ev.Type)
		}
		evs = append(evs, ev)
	}
	if !evs[0].IsInit() || evs[0].SessionID != "0f4bd87c-9f6d-4c65-a372-d2dc19190827" {
		t.Errorf("init: %+v", evs[0])
	}
	if got := evs[1].Message.Text(); got != "running" {
		t.Errorf("assistant text = %q", got)
	}
	tu := evs[2].Message.Content[0]
	if tu.Type != "tool_use" || tu.Name != "Bash" || tu.ID != "toolu_0002_1" || !strings.Contains(string(tu.Input), "echo hi") {
		t.Errorf("tool_use block: %+v", tu)
	}
	tr := evs[3].Message.Content[0]
	if tr.Type != "tool_result" || tr.ToolUseID != "toolu_0002_1" || tr.ResultText() != "BASH-OK" {
		t.Errorf("tool_result block: %+v", tr)
	}
	if r := evs[4].Result; r == nil || r.IsError || r.NumTurns != 2 || r.Result != "file made" || r.DurationMS != 1379 {
		t.Errorf("result: %+v", r)
	}
	if r := evs[5].Result; r == nil || !r.IsError || r.NumTurns != 0 || len(r.Errors) != 1 || !strings.HasPrefix(r.Errors[0], "No conversation found") {
		t.Errorf("error result: %+v", r)
	}
	if !bytes.Contains(evs[6].Stream, []byte("text_delta")) {
		t.Errorf("stream event: %s", evs[6].Stream)
	}
}

func TestParseLineOddLines(t *testing.T) {
	for _, tc := range []struct {
		line    string
		notJSON bool
		typ     string
	}{
		{line: ``, notJSON: true},
		{line: `   `, notJSON: true},
		{line: `Error: something went wrong`, notJSON: true},
		{line: `{"type":"assistant","message":{"content":[{"text":"torn`, notJSON: true},
		{line: `[1,2]`, notJSON: true},
		{line: `null`, notJSON: true},
		{line: `{}`, typ: ""},
		{line: `{"type":"rate_limit_event","info":{"x":1}}`, typ: "rate_limit_event"},
		{line: `{"type":7,"subtype":[]}`, typ: ""},
		{line: `{"type":"assistant","message":"not an object"}`, typ: "assistant"},
		{line: `{"type":"assistant","message":{"content":[1,"x",{"type":5}]}}`, typ: "assistant"},
		{line: `{"type":"user","message":{"role":"user","content":"plain string"}}`, typ: "user"},
		{line: `{"type":"result","is_error":"yes","num_turns":"many","errors":[{"a":1}]}`, typ: "result"},
	} {
		ev, err := ParseLine([]byte(tc.line))
		if tc.notJSON {
			if !errors.Is(err, ErrNotJSON) {
				t.Errorf("ParseLine(%q) err = %v, want ErrNotJSON", tc.line, err)
			}
		} else if err != nil {
			t.Errorf("ParseLine(%q): %v", tc.line, err)
		}
		if ev.Type != tc.typ {
			t.Errorf("ParseLine(%q).Type = %q, want %q", tc.line, ev.Type, tc.typ)
		}
		if string(ev.Raw) != strings.TrimRight(tc.line, "\r\n") {
			t.Errorf("ParseLine(%q) lost the raw line: %q", tc.line, ev.Raw)
		}
	}
	ev, _ := ParseLine([]byte(`{"type":"user","message":{"role":"user","content":"plain string"}}`))
	if ev.Message.Text() != "plain string" {
		t.Errorf("string content: %+v", ev.Message)
	}
}

func TestUserLine(t *testing.T) {
	l := UserLine("hi \"there\"\nsecond line")
	if bytes.Count(l, []byte("\n")) != 1 || l[len(l)-1] != '\n' {
		t.Fatalf("UserLine must be one line: %q", l)
	}
	ev, err := ParseLine(l)
	if err != nil || ev.Type != TypeUser || ev.Message.Text() != "hi \"there\"\nsecond line" {
		t.Errorf("round trip: %+v %v", ev, err)
	}
}

func FuzzParseLine(f *testing.F) {
	for _, l := range cliLines {
		f.Add([]byte(l))
		f.Add([]byte(l[:len(l)/2]))
	}
	f.Add([]byte(`{"type":"assistant","message":{"content":[{"type":"tool_result","content":[{"type":"text","text":"x"}]}]}}`))
	f.Add([]byte("\xff\xfe{}"))
	f.Fuzz(func(t *testing.T, line []byte) {
		ev, err := ParseLine(line)
		if !bytes.Equal(ev.Raw, bytes.TrimRight(line, "\r\n")) {
			t.Fatalf("Raw %q differs from the input %q", ev.Raw, line)
		}
		if err != nil && !errors.Is(err, ErrNotJSON) {
			t.Fatalf("unexpected error kind: %v", err)
		}
		if err == nil {
			// Everything derived must be usable without a nil check
			// beyond the documented ones.
			_ = ev.Message.Text()
			if ev.Message != nil {
				for _, b := range ev.Message.Content {
					_ = b.ResultText()
				}
			}
			if ev.Type == TypeResult && ev.Result == nil {
				t.Fatal("result line without Result")
			}
		}
	})
}

func BenchmarkParseLine(b *testing.B) {
	line := []byte(cliLines[2])
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		if _, err := ParseLine(line); err != nil {
			b.Fatal(err)
		}
	}
}
