package runner

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strconv"

	"github.com/ag-ui-protocol/ag-ui/sdks/community/go/pkg/core/events"
	"github.com/ag-ui-protocol/ag-ui/sdks/community/go/pkg/core/types"
)

// Bounds of a MESSAGES_SNAPSHOT: it is built from the frame file, which
// may hold hours of conversation and tool outputs of many MiB. Each text is
// cut to maxSnapshotText bytes (a tool's output to maxSnapshotTool), saying
// so; the full text stays in the event log and in a replay from the start.
const (
	maxSnapshotText  = 64 << 10
	maxSnapshotTool  = 16 << 10
	maxSnapshotArgs  = 256 << 10
	maxSnapshotFrame = 128 << 10 // a frame longer than this is read only for its ids
)

// snapshotMsg is a message of the conversation being rebuilt.
type snapshotMsg struct {
	m     types.Message
	text  bytes.Buffer
	cut   int // bytes of text left out
	limit int
	args  map[string]*bytes.Buffer // tool call id -> arguments
}

func (sm *snapshotMsg) add(s string, n int) {
	if room := sm.limit - sm.text.Len(); room > 0 {
		if len(s) > room {
			s = s[:room]
		}
		sm.text.WriteString(s)
		n -= len(s)
	}
	sm.cut += n
}

// frameHead is what a snapshot needs of one event.
type frameHead struct {
	Type, MessageID, Role, Delta, ToolCallID, ToolCallName, ParentMessageID, Content string
}

var (
	headType = regexp.MustCompile(`"type":"([A-Z_]+)"`)
	headMsg  = regexp.MustCompile(`"messageId":"([^"\\]*)"`)
	headTool = regexp.MustCompile(`"toolCallId":"([^"\\]*)"`)
)

// messagesBefore rebuilds the conversation from the frames before byte end
// of the frame file: user and assistant text messages, tool calls and their
// results. A text message or tool call still open at end is left out (a
// stream resuming there opens it again).
func (fl *frameLog) messagesBefore(end int64) ([]types.Message, error) {
	msgs, _, err := fl.conversationBefore(end)
	return msgs, err
}

// cutText is a text message the point of a snapshot cuts in two: its id
// and its text so far (cut like the snapshot's).
type cutText struct{ id, text string }

// conversationBefore is messagesBefore, and the text message still open at
// end: a client that connects there gets its beginning with its start, so
// that nothing streamed before it connected is missing.
func (fl *frameLog) conversationBefore(end int64) ([]types.Message, cutText, error) {
	var msgs []*snapshotMsg
	byID := map[string]*snapshotMsg{}
	toolOwner := map[string]*snapshotMsg{} // tool call id -> its assistant message
	openText, openTool := "", ""
	br := bufio.NewReaderSize(io.NewSectionReader(fl.f, 0, end), 64<<10)
	for {
		line, err := readLine(br, maxSnapshotFrame)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, cutText{}, fmt.Errorf("AG-UI frame cache: %w", err)
		}
		data, ok := bytes.CutPrefix(line.head, []byte("data: "))
		if !ok {
			continue
		}
		var h frameHead
		cut := 0 // bytes of the text not in h (a frame too big to decode)
		if line.size <= maxSnapshotFrame {
			json.Unmarshal(data, &h)
		} else {
			// Too big to decode for a snapshot (a tool's output): the
			// encoder writes the ids before the content.
			if m := headType.FindSubmatch(data); m != nil {
				h.Type = string(m[1])
			}
			if m := headMsg.FindSubmatch(data); m != nil {
				h.MessageID = string(m[1])
			}
			if m := headTool.FindSubmatch(data); m != nil {
				h.ToolCallID = string(m[1])
			}
			h.Delta, h.Content = partialString(data, "delta"), partialString(data, "content")
			cut = line.size - len(h.Delta) - len(h.Content)
		}
		switch h.Type {
		case "TEXT_MESSAGE_START":
			sm := &snapshotMsg{m: types.Message{ID: h.MessageID, Role: types.Role(firstNonEmpty(h.Role, "assistant"))}, limit: maxSnapshotText}
			msgs = append(msgs, sm)
			byID[h.MessageID] = sm
			openText = h.MessageID
		case "TEXT_MESSAGE_CONTENT":
			if sm := byID[h.MessageID]; sm != nil {
				sm.add(h.Delta, len(h.Delta)+cut)
			}
		case "TEXT_MESSAGE_END":
			openText = ""
		case "TOOL_CALL_START":
			sm := byID[h.ParentMessageID]
			if sm == nil || sm.m.Role != types.RoleAssistant {
				sm = &snapshotMsg{m: types.Message{ID: h.ToolCallID + ".call", Role: types.RoleAssistant}, limit: maxSnapshotText}
				msgs = append(msgs, sm)
				byID[sm.m.ID] = sm
			}
			sm.m.ToolCalls = append(sm.m.ToolCalls, types.ToolCall{ID: h.ToolCallID, Type: types.ToolCallTypeFunction, Function: types.FunctionCall{Name: h.ToolCallName}})
			if sm.args == nil {
				sm.args = map[string]*bytes.Buffer{}
			}
			sm.args[h.ToolCallID] = &bytes.Buffer{}
			toolOwner[h.ToolCallID] = sm
			openTool = h.ToolCallID
		case "TOOL_CALL_ARGS":
			if sm := toolOwner[h.ToolCallID]; sm != nil {
				sm.args[h.ToolCallID].WriteString(h.Delta)
			}
		case "TOOL_CALL_END":
			openTool = ""
		case "TOOL_CALL_RESULT":
			sm := &snapshotMsg{m: types.Message{ID: h.MessageID, Role: types.RoleTool, ToolCallID: h.ToolCallID}, limit: maxSnapshotTool}
			sm.add(h.Content, len(h.Content)+cut)
			msgs = append(msgs, sm)
			byID[h.MessageID] = sm
		}
	}
	out := make([]types.Message, 0, len(msgs))
	var open cutText
	for _, sm := range msgs {
		if sm.m.ID == openText {
			open = cutText{id: sm.m.ID, text: sm.text.String()}
			continue
		}
		m := sm.m
		var calls []types.ToolCall
		for _, c := range m.ToolCalls {
			if c.ID == openTool {
				continue
			}
			args := sm.args[c.ID].String()
			if len(args) > maxSnapshotArgs || !json.Valid([]byte(args)) {
				args = `{"tether":"arguments of ` + strconv.Itoa(len(args)) + ` bytes left out of the snapshot"}`
			}
			c.Function.Arguments = args
			calls = append(calls, c)
		}
		m.ToolCalls = calls
		if sm.text.Len() > 0 || sm.cut > 0 {
			s := sm.text.String()
			if sm.cut > 0 {
				s += fmt.Sprintf(" [%d more bytes; replay the stream from its start for all of it]", sm.cut)
			}
			m.Content = s
		}
		if m.Content == nil && len(m.ToolCalls) == 0 {
			if m.Role != types.RoleAssistant {
				m.Content = ""
			} else {
				continue
			}
		}
		out = append(out, m)
	}
	return out, open, nil
}

// partialString decodes what the head of a frame holds of the JSON string
// field key: its beginning, when the frame is longer than the head.
func partialString(head []byte, key string) string {
	_, rest, ok := bytes.Cut(head, []byte(`"`+key+`":"`))
	if !ok {
		return ""
	}
	end := len(rest)
	for i := 0; i < len(rest); i++ {
		if rest[i] == '\\' {
			i++
			continue
		}
		if rest[i] == '"' {
			end = i
			break
		}
	}
	raw := rest[:end]
	// An escape the head cuts in two does not decode: drop up to its 6 bytes.
	for drop := 0; drop <= 6 && drop <= len(raw); drop++ {
		var s string
		if json.Unmarshal(append(append([]byte{'"'}, raw[:len(raw)-drop]...), '"'), &s) == nil {
			return s
		}
	}
	return ""
}

// frameLine is one line of the frame file: its first bytes and its size.
type frameLine struct {
	head []byte
	size int
}

// readLine reads a line, keeping at most keep bytes of it.
func readLine(br *bufio.Reader, keep int) (frameLine, error) {
	var l frameLine
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			body := bytes.TrimSuffix(chunk, []byte("\n"))
			if room := keep - len(l.head); room > 0 {
				l.head = append(l.head, body[:min(len(body), room)]...)
			}
			l.size += len(body)
		}
		switch {
		case err == nil:
			return l, nil
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF && l.size > 0:
			return l, nil
		default:
			return l, err
		}
	}
}

// connectFrames returns the frames that tell a client connecting (or
// reconnecting) before event skip of record seq where the session is: the
// conversation so far as MESSAGES_SNAPSHOT and the session's state as
// STATE_SNAPSHOT, inside the run open there (whose RUN_STARTED comes
// again, with the start of a text message or tool call the point cuts in
// two) or, between runs, in a short run of their own.
func (fl *frameLog) connectFrames(seq int64, skip int, state any) ([]byte, error) {
	open, err := fl.resumePrefix(seq, skip)
	if err != nil {
		return nil, err
	}
	fl.mu.Lock()
	n := int64(len(fl.recs))
	var end int64
	switch {
	case seq <= n:
		end = fl.eventOffset(fl.recs[seq-1], skip)
	default:
		end = fl.size
	}
	fl.mu.Unlock()
	msgs, cut, err := fl.conversationBefore(end)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	write := func(ev events.Event) error { return writeFrame(&b, ev) }
	run := "tether-connect-" + strconv.FormatInt(seq, 10) + "-" + strconv.Itoa(skip)
	if len(open.runStarted) > 0 {
		b.Write(open.runStarted)
	} else if err := write(events.NewRunStartedEvent(fl.thread, run)); err != nil {
		return nil, err
	}
	if err := write(events.NewMessagesSnapshotEvent(msgs)); err != nil {
		return nil, err
	}
	if err := write(events.NewStateSnapshotEvent(state)); err != nil {
		return nil, err
	}
	if len(open.runStarted) > 0 {
		b.Write(open.starts)
		// The snapshot leaves out the message the point cuts in two (a
		// snapshot replaces the client's messages): its start came again
		// just now, and with it what it said so far.
		if cut.id != "" && cut.text != "" && bytes.Contains(open.starts, []byte(`"messageId":"`+cut.id+`"`)) {
			if err := write(events.NewTextMessageContentEvent(cut.id, cut.text)); err != nil {
				return nil, err
			}
		}
	} else if err := write(events.NewRunFinishedEvent(fl.thread, run)); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
