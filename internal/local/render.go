package local

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/tether-dev/tether/internal/agent"
	"github.com/tether-dev/tether/internal/runner"
)

// eventTail follows the runner's event log (.tether/events.jsonl): it prints
// the agent's text and tool calls as they happen, and tracks which turns
// were started and which finished, across runner lives (the log is one file
// for the whole session).
type eventTail struct {
	path    string
	off     int64
	partial []byte
	out     io.Writer // nil: track only

	lastInput  int64 // newest turn with an input record
	lastResult int64 // newest turn with a result record
	inputs     map[string]int
	resumes    []runner.ResumeStatus
	onRecord   func(runner.Record)
}

// newEventTail reads the log as it is now without printing it; poll prints
// what comes after.
func newEventTail(path string, out io.Writer) *eventTail {
	t := &eventTail{path: path, inputs: map[string]int{}}
	t.poll()
	t.out = out
	return t
}

func (t *eventTail) poll() {
	f, err := os.Open(t.path)
	if err != nil {
		return
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() < t.off {
		// Replaced by a restore: start over, quietly.
		t.off, t.partial = 0, nil
	}
	if _, err := f.Seek(t.off, io.SeekStart); err != nil {
		return
	}
	data, err := io.ReadAll(f)
	if err != nil || len(data) == 0 {
		return
	}
	t.off += int64(len(data))
	data = append(t.partial, data...)
	i := bytes.LastIndexByte(data, '\n')
	if i < 0 {
		t.partial = data
		return
	}
	t.partial = append([]byte(nil), data[i+1:]...)
	for _, line := range bytes.Split(data[:i], []byte{'\n'}) {
		var rec runner.Record
		if json.Unmarshal(line, &rec) == nil {
			t.record(rec)
		}
	}
}

// idle: every turn that was started has its result.
func (t *eventTail) idle() bool { return t.lastInput > 0 && t.lastResult >= t.lastInput }

func (t *eventTail) printf(format string, args ...any) {
	if t.out != nil {
		fmt.Fprintf(t.out, format, args...)
	}
}

func (t *eventTail) record(rec runner.Record) {
	if t.onRecord != nil {
		t.onRecord(rec)
	}
	switch rec.Kind {
	case runner.KindInput:
		t.lastInput = max(t.lastInput, rec.Turn)
		t.inputs[rec.Type]++
		var d struct{ Text string }
		json.Unmarshal(rec.Data, &d)
		t.printf("\n» [turn %d, %s] %s\n", rec.Turn, rec.Type, oneLine(d.Text, 300))
	case runner.KindRunner:
		switch rec.Type {
		case "resume":
			var rs runner.ResumeStatus
			json.Unmarshal(rec.Data, &rs)
			t.resumes = append(t.resumes, rs)
		case "turn_interrupted":
			var d struct {
				Turn int64 `json:"turn"`
			}
			json.Unmarshal(rec.Data, &d)
			t.printf("  (turn %d was interrupted by the crash)\n", d.Turn)
		}
	case runner.KindCLI:
		ev, err := agent.ParseLine(rec.Data)
		if err != nil {
			return
		}
		switch {
		case ev.Result != nil:
			t.lastResult = max(t.lastResult, rec.Turn)
			status := "done"
			if ev.Result.IsError {
				status = "error: " + ev.Result.Subtype
			}
			t.printf("  [turn %d %s, %d ms]\n", rec.Turn, status, ev.Result.DurationMS)
		case ev.Type == agent.TypeAssistant && ev.Message != nil && ev.ParentToolUseID == "":
			for _, b := range ev.Message.Content {
				switch b.Type {
				case "text":
					if s := strings.TrimSpace(b.Text); s != "" {
						t.printf("  %s\n", strings.ReplaceAll(s, "\n", "\n  "))
					}
				case "tool_use":
					t.printf("  ⏺ %s %s\n", b.Name, toolSummary(b.Input))
				}
			}
		case ev.Type == agent.TypeUser && ev.Message != nil && ev.ParentToolUseID == "":
			for _, b := range ev.Message.Content {
				if b.Type == "tool_result" {
					mark := "⎿"
					if b.IsError {
						mark = "⎿ (error)"
					}
					t.printf("    %s %s\n", mark, oneLine(b.ResultText(), 160))
				}
			}
		}
	}
}

// toolSummary shows the interesting field of a tool call's input.
func toolSummary(in json.RawMessage) string {
	var m map[string]any
	if json.Unmarshal(in, &m) != nil {
		return oneLine(string(in), 160)
	}
	for _, k := range []string{"command", "file_path", "pattern", "path", "url"} {
		if v, ok := m[k].(string); ok {
			return oneLine(v, 160)
		}
	}
	return oneLine(string(in), 160)
}

func oneLine(s string, n int) string {
	s = strings.TrimSpace(s)
	lines := strings.Count(s, "\n") + 1
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > n {
		s = s[:n] + "…"
	}
	if lines > 1 {
		s += fmt.Sprintf(" (+%d lines)", lines-1)
	}
	return s
}

// readEventLog returns the records of the runner's event log.
func readEventLog(path string) []runner.Record {
	t := &eventTail{path: path, inputs: map[string]int{}}
	var out []runner.Record
	t.onRecord = func(r runner.Record) { out = append(out, r) }
	t.poll()
	return out
}
