package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Line types the CLI prints in stream-json mode (verified on 2.1.328). Any
// other type is passed through as an Event with that Type and its raw line.
const (
	TypeSystem      = "system"
	TypeAssistant   = "assistant"
	TypeUser        = "user"
	TypeStreamEvent = "stream_event"
	TypeResult      = "result"
)

// ErrNotJSON is wrapped by ParseLine for a line that is not a JSON object:
// debug output, a crash trace, a torn write.
var ErrNotJSON = errors.New("not a JSON object")

// Event is one parsed line of the CLI's stream-json output. Raw always holds
// the line as read, so nothing the CLI said is lost even when a field has a
// shape this package does not know.
type Event struct {
	Type            string
	Subtype         string
	SessionID       string
	UUID            string
	ParentToolUseID string

	// Message is set for assistant and user lines.
	Message *Message
	// Result is set for result lines.
	Result *Result
	// Stream is the Messages API event inside a stream_event line.
	Stream json.RawMessage

	// Raw is the line without its trailing newline. It is a copy: the
	// caller's buffer may be reused.
	Raw []byte
}

// IsInit reports whether e is the system/init line the CLI prints at the start
// of every turn; its SessionID is the id `--resume` takes.
func (e Event) IsInit() bool { return e.Type == TypeSystem && e.Subtype == "init" }

// Known reports whether the line's type is one this package decodes.
func (e Event) Known() bool {
	switch e.Type {
	case TypeSystem, TypeAssistant, TypeUser, TypeStreamEvent, TypeResult:
		return true
	}
	return false
}

// Message is the message of an assistant or user line.
type Message struct {
	ID      string
	Role    string
	Content []Block
}

// Text returns the text blocks of the message, joined by newlines.
func (m *Message) Text() string {
	if m == nil {
		return ""
	}
	var b bytes.Buffer
	for _, c := range m.Content {
		if c.Type == "text" && c.Text != "" {
			if b.Len() > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(c.Text)
		}
	}
	return b.String()
}

// Block is one content block: text, tool_use, tool_result, thinking, or a type
// added later (then only Type and Raw are set).
type Block struct {
	Type      string
	Text      string          // text, thinking
	ID        string          // tool_use
	Name      string          // tool_use
	Input     json.RawMessage // tool_use
	ToolUseID string          // tool_result
	Content   json.RawMessage // tool_result: a string or a list of blocks
	IsError   bool            // tool_result
	Raw       json.RawMessage
}

// ResultText returns a tool_result's content as text.
func (b Block) ResultText() string {
	var s string
	if json.Unmarshal(b.Content, &s) == nil {
		return s
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(b.Content, &parts) == nil {
		var out bytes.Buffer
		for _, p := range parts {
			out.WriteString(p.Text)
		}
		return out.String()
	}
	return string(b.Content)
}

// Result is the line that ends a turn.
type Result struct {
	Subtype      string // "success" or "error_..."
	IsError      bool
	NumTurns     int
	Result       string
	Errors       []string
	StopReason   string
	TotalCostUSD float64
	DurationMS   int64
}

// ParseLine parses one stream-json line. It never panics: a line that is not a
// JSON object returns an error wrapping ErrNotJSON; a JSON object of an unknown
// type, or with fields of unexpected shapes, returns an Event with what could
// be decoded and the whole line in Raw.
func ParseLine(line []byte) (Event, error) {
	line = bytes.TrimRight(line, "\r\n")
	ev := Event{Raw: bytes.Clone(line)}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(line, &top); err != nil || top == nil {
		return ev, fmt.Errorf("stream-json line %.80q: %w", line, ErrNotJSON)
	}
	ev.Type = str(top["type"])
	ev.Subtype = str(top["subtype"])
	ev.SessionID = str(top["session_id"])
	ev.UUID = str(top["uuid"])
	ev.ParentToolUseID = str(top["parent_tool_use_id"])
	switch ev.Type {
	case TypeAssistant, TypeUser:
		ev.Message = parseMessage(top["message"])
	case TypeStreamEvent:
		ev.Stream = top["event"]
	case TypeResult:
		r := &Result{
			Subtype:    ev.Subtype,
			Result:     str(top["result"]),
			StopReason: str(top["stop_reason"]),
		}
		json.Unmarshal(top["is_error"], &r.IsError)
		json.Unmarshal(top["num_turns"], &r.NumTurns)
		json.Unmarshal(top["total_cost_usd"], &r.TotalCostUSD)
		json.Unmarshal(top["duration_ms"], &r.DurationMS)
		var errs []json.RawMessage
		json.Unmarshal(top["errors"], &errs)
		for _, e := range errs {
			if s := str(e); s != "" {
				r.Errors = append(r.Errors, s)
			} else {
				r.Errors = append(r.Errors, string(e))
			}
		}
		ev.Result = r
	}
	return ev, nil
}

// str decodes a JSON string, or returns "" for anything else: the CLI's
// fields are strings, and a surprise must not abort the parse.
func str(raw json.RawMessage) string {
	var s string
	if len(raw) == 0 || json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

func parseMessage(raw json.RawMessage) *Message {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil || m == nil {
		return &Message{}
	}
	msg := &Message{ID: str(m["id"]), Role: str(m["role"])}
	content := m["content"]
	if s := str(content); s != "" {
		msg.Content = []Block{{Type: "text", Text: s, Raw: content}}
		return msg
	}
	var blocks []json.RawMessage
	json.Unmarshal(content, &blocks)
	for _, braw := range blocks {
		var b map[string]json.RawMessage
		if json.Unmarshal(braw, &b) != nil || b == nil {
			msg.Content = append(msg.Content, Block{Raw: braw})
			continue
		}
		blk := Block{
			Type:      str(b["type"]),
			ID:        str(b["id"]),
			Name:      str(b["name"]),
			Input:     b["input"],
			ToolUseID: str(b["tool_use_id"]),
			Content:   b["content"],
			Raw:       braw,
		}
		blk.Text = str(b["text"])
		if blk.Type == "thinking" {
			blk.Text = str(b["thinking"])
		}
		json.Unmarshal(b["is_error"], &blk.IsError)
		msg.Content = append(msg.Content, blk)
	}
	return msg
}

// UserLine returns the stdin line that sends text to the CLI as a user
// message, newline included.
func UserLine(text string) []byte {
	j, _ := json.Marshal(map[string]any{
		"type":    "user",
		"message": map[string]any{"role": "user", "content": text},
	})
	return append(j, '\n')
}
