package runner

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/ag-ui-protocol/ag-ui/sdks/community/go/pkg/core/events"

	"github.com/tether-dev/tether/internal/agent"
)

// Names of the CUSTOM events the runner emits.
const (
	CustomResume      = "tether.resume"           // value: ResumeStatus
	CustomSession     = "tether.session"          // value: {"session_id"}
	CustomInterrupted = "tether.turn_interrupted" // value: {"turn", "run_id"}
	CustomRepaired    = "tether.transcript_repaired"
	CustomStopped     = "tether.stopped"
	CustomInput       = "tether.input" // a message not sent through this stream: notice, recap, initial prompt
)

// Event is one AG-UI event with its SSE id. IDs are "<seq>:<k>": the k-th
// event made from event-log record seq, so a client reconnecting with
// Last-Event-ID resumes exactly after the last event it got.
type Event struct {
	ID    string
	Event events.Event
}

// Translate turns one event-log record into AG-UI events. It depends on the
// record alone, so a replay yields exactly the events (and ids) a live client
// saw.
func Translate(rec Record, thread string) []Event {
	var evs []events.Event
	ts := rec.Time.UnixMilli()
	switch rec.Kind {
	case KindInput:
		var d inputData
		json.Unmarshal(rec.Data, &d)
		runID := RunID(rec.Turn, d.RunID)
		evs = append(evs, events.NewRunStartedEvent(thread, runID))
		if rec.Type != SourceUser {
			evs = append(evs, events.NewCustomEvent(CustomInput, events.WithValue(map[string]any{
				"source": rec.Type, "text": d.Text, "turn": rec.Turn})))
		}
	case KindCLI:
		evs = translateCLI(rec, thread)
	case KindRunner:
		var d map[string]any
		json.Unmarshal(rec.Data, &d)
		runID, _ := d["run_id"].(string)
		runID = firstNonEmpty(runID, rec.Run)
		open, _ := d["turn_open"].(bool)
		switch rec.Type {
		case "resume":
			var rs ResumeStatus
			json.Unmarshal(rec.Data, &rs)
			evs = append(evs, events.NewCustomEvent(CustomResume, events.WithValue(rs)))
		case "turn_interrupted":
			evs = append(evs,
				events.NewCustomEvent(CustomInterrupted, events.WithValue(d)),
				events.NewRunErrorEvent("the turn was interrupted: the runner restarted while it ran", events.WithRunID(runID), events.WithErrorCode("interrupted")))
		case "transcript_repaired":
			evs = append(evs, events.NewCustomEvent(CustomRepaired, events.WithValue(d)))
		case "cli_exit", "runner_failed":
			msg := fmt.Sprintf("%s: %v%v", rec.Type, d["exit"], d["error"])
			if open {
				evs = append(evs, events.NewRunErrorEvent(msg, events.WithRunID(runID), events.WithErrorCode(rec.Type)))
			} else {
				evs = append(evs, events.NewCustomEvent("tether."+rec.Type, events.WithValue(d)))
			}
		case "stopped":
			if open {
				evs = append(evs, events.NewRunErrorEvent("the runner stopped during the turn", events.WithRunID(runID), events.WithErrorCode("stopped")))
			}
			evs = append(evs, events.NewCustomEvent(CustomStopped, events.WithValue(d)))
		default:
			evs = append(evs, events.NewCustomEvent("tether."+rec.Type, events.WithValue(d)))
		}
	}
	out := make([]Event, len(evs))
	for i, e := range evs {
		e.SetTimestamp(ts)
		out[i] = Event{ID: strconv.FormatInt(rec.Seq, 10) + ":" + strconv.Itoa(i), Event: e}
	}
	return out
}

func translateCLI(rec Record, thread string) []events.Event {
	ev, err := agent.ParseLine(rec.Data)
	if err != nil {
		// Data is a JSON string holding the line that was not JSON.
		var s string
		json.Unmarshal(rec.Data, &s)
		return []events.Event{events.NewRawEvent(map[string]any{"invalid_line": s}, events.WithSource("claude-cli"))}
	}
	var out []events.Event
	switch {
	case ev.IsInit():
		out = append(out, events.NewCustomEvent(CustomSession, events.WithValue(map[string]any{"session_id": ev.SessionID, "turn": rec.Turn})))
	case ev.Type == agent.TypeAssistant && ev.Message != nil:
		for i, b := range ev.Message.Content {
			id := fmt.Sprintf("%s-%d", firstNonEmpty(ev.Message.ID, ev.UUID, "msg"), i)
			switch b.Type {
			case "text":
				if b.Text == "" {
					continue
				}
				out = append(out,
					events.NewTextMessageStartEvent(id, events.WithRole("assistant")),
					events.NewTextMessageContentEvent(id, b.Text),
					events.NewTextMessageEndEvent(id))
			case "tool_use":
				args := string(b.Input)
				if args == "" {
					args = "{}"
				}
				out = append(out,
					events.NewToolCallStartEvent(b.ID, b.Name, events.WithParentMessageID(firstNonEmpty(ev.Message.ID, id))),
					events.NewToolCallArgsEvent(b.ID, args),
					events.NewToolCallEndEvent(b.ID))
			default:
				out = append(out, events.NewRawEvent(json.RawMessage(b.Raw), events.WithSource("claude-cli")))
			}
		}
	case ev.Type == agent.TypeUser && ev.Message != nil:
		for i, b := range ev.Message.Content {
			if b.Type == "tool_result" {
				out = append(out, events.NewToolCallResultEvent(fmt.Sprintf("%s-%d", firstNonEmpty(ev.UUID, "result"), i), b.ToolUseID, b.ResultText()))
			}
		}
	case ev.Result != nil:
		runID := firstNonEmpty(rec.Run, RunID(rec.Turn, ""))
		if ev.Result.IsError {
			msg := ev.Result.Result
			if len(ev.Result.Errors) > 0 {
				msg = strings.Join(ev.Result.Errors, "; ")
			}
			out = append(out, events.NewRunErrorEvent(firstNonEmpty(msg, ev.Result.Subtype), events.WithRunID(runID), events.WithErrorCode(ev.Result.Subtype)))
		} else {
			out = append(out, events.NewRunFinishedEventWithOptions(thread, runID, events.WithResult(map[string]any{
				"result": ev.Result.Result, "num_turns": ev.Result.NumTurns, "total_cost_usd": ev.Result.TotalCostUSD, "session_id": ev.SessionID})))
		}
	default:
		out = append(out, events.NewRawEvent(json.RawMessage(ev.Raw), events.WithSource("claude-cli")))
	}
	return out
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// parseEventID parses "<seq>:<k>" (or a bare "<seq>", meaning all of seq was
// delivered) into the record to resume at and the first event index to send.
func parseEventID(id string) (seq int64, next int, err error) {
	if id == "" {
		return 0, 0, nil
	}
	s, k, hasK := strings.Cut(id, ":")
	seq, err = strconv.ParseInt(s, 10, 64)
	if err != nil || seq < 0 {
		return 0, 0, fmt.Errorf("bad event id %q: want <seq>:<index>", id)
	}
	if !hasK {
		return seq + 1, 0, nil
	}
	n, err := strconv.Atoi(k)
	if err != nil || n < 0 {
		return 0, 0, fmt.Errorf("bad event id %q: want <seq>:<index>", id)
	}
	return seq, n + 1, nil
}
