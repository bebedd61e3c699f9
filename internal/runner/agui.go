package runner

import (
	"encoding/json"
	"fmt"
	"sort"
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
// Last-Event-ID resumes exactly after the last event it got. Run is the id
// of the run the event belongs to.
type Event struct {
	ID     string
	Run    string
	Thread string // the run's thread id
	Event  events.Event
}

// Translator turns the event log, record after record in order, into AG-UI
// events that form runs the protocol accepts (and @ag-ui/client's
// verifyEvents checks): every run opens with RUN_STARTED and ends with
// exactly one RUN_FINISHED or RUN_ERROR, nothing comes between runs, and
// message ids are unique. A turn is one run, with the client's run and
// thread ids; what the runner reports inside a turn (a resume under a new
// id, a stop) is a CUSTOM event of that run, and what it reports between
// turns (a restart, the resume outcome) is a short run of its own
// ("tether-<seq>") holding the CUSTOM events. The events depend on the log
// alone, so a replay yields exactly the events (and ids) a live client saw.
type Translator struct {
	thread string
	run    string // the open run, "" between runs
	// runThread is the open run's thread id.
	runThread string
	// text is the AG-UI id of the last text message made of each assistant
	// message of the open run: its tool calls' parent.
	text map[string]string
	// stream is what the CLI's partial messages (stream_event lines) of the
	// open run have opened and streamed.
	stream streamState
}

// streamState follows the text blocks of the assistant message the model
// is streaming. Each becomes a text message as it streams: start at its
// content_block_start, a content event per text delta, end at its
// content_block_stop. The complete message the CLI prints as well (before
// or after the block's end) then adds no text of its own: each of its text
// blocks is matched, by its text, with the first streamed block that has
// not been matched yet.
type streamState struct {
	msg    string                // the streaming message's id (message_start)
	open   map[int]*streamedText // content block index -> its text message
	blocks []*streamedText       // the run's streamed blocks not matched yet, in order
}

// streamedText is one text block as it streamed.
type streamedText struct {
	id     string
	text   strings.Builder // up to maxMatchText bytes of it
	long   bool            // text holds only its beginning
	closed bool
}

// maxMatchText bounds what is kept of a streamed block to match it with
// the complete message.
const maxMatchText = 1 << 20

func (b *streamedText) add(s string) {
	if b.text.Len()+len(s) > maxMatchText {
		b.long = true
		s = s[:max(0, maxMatchText-b.text.Len())]
	}
	b.text.WriteString(s)
}

// matches reports whether a complete text block is the one b streamed (or
// is streaming).
func (b *streamedText) matches(text string) bool {
	if b.closed && !b.long {
		return text == b.text.String()
	}
	return strings.HasPrefix(text, b.text.String())
}

// match takes the first streamed block that text is: its id, or "".
func (st *streamState) match(text string) string {
	for i, b := range st.blocks {
		if b.matches(text) {
			st.blocks = st.blocks[i+1:]
			return b.id
		}
	}
	return ""
}

// streamEvent is what the translator reads of a Messages API stream event.
type streamEvent struct {
	Type    string `json:"type"`
	Index   int    `json:"index"`
	Message struct {
		ID string `json:"id"`
	} `json:"message"`
	ContentBlock struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content_block"`
	Delta struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"delta"`
}

// NewTranslator translates a log from its first record; thread is the
// thread id of runs whose input names none.
func NewTranslator(thread string) *Translator { return &Translator{thread: thread} }

// Translate turns rec alone into AG-UI events, as the first record of a log.
func Translate(rec Record, thread string) []Event { return NewTranslator(thread).Record(rec) }

// emitter collects the events of one record.
type emitter struct {
	t   *Translator
	rec Record
	out []Event
}

func (e *emitter) add(ev events.Event) {
	e.out = append(e.out, Event{Run: e.t.run, Thread: e.t.runThread, Event: ev})
}

// open starts run id of thread, ending an open run first (with why as its
// error).
func (e *emitter) open(id, thread, why string) {
	if e.t.run != "" {
		e.fail(why, "superseded")
	}
	e.t.run, e.t.runThread, e.t.text, e.t.stream = id, thread, map[string]string{}, streamState{}
	e.add(events.NewRunStartedEvent(thread, id))
}

func (e *emitter) finish(ev events.Event) {
	e.endStreamed()
	e.add(ev)
	e.t.run, e.t.text, e.t.stream = "", nil, streamState{}
}

// endStreamed ends the text messages a stream left open (the CLI died
// mid-reply, or the turn ended without the block's end): a run ends with
// none open.
func (e *emitter) endStreamed() {
	idx := make([]int, 0, len(e.t.stream.open))
	for i := range e.t.stream.open {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for _, i := range idx {
		e.add(events.NewTextMessageEndEvent(e.t.stream.open[i].id))
	}
	e.t.stream.open = nil
}

// streaming returns the id of the text message the model is streaming in
// the open run, "" when none.
func (t *Translator) streaming() string {
	first, id := -1, ""
	for i, b := range t.stream.open {
		if first < 0 || i < first {
			first, id = i, b.id
		}
	}
	return id
}

// streamed translates a partial message of the open run: text deltas only
// (tool calls and the rest come from the complete message).
func (t *Translator) streamed(e *emitter, raw json.RawMessage) {
	var se streamEvent
	if t.run == "" || json.Unmarshal(raw, &se) != nil {
		return // between runs there is no message to stream into; the complete one follows
	}
	st := &t.stream
	switch se.Type {
	case "message_start":
		st.msg = se.Message.ID
	case "content_block_start":
		if se.ContentBlock.Type != "text" {
			return
		}
		b := &streamedText{id: firstNonEmpty(st.msg, "msg") + "." + strconv.FormatInt(e.rec.Seq, 10) + ".s"}
		if st.open == nil {
			st.open = map[int]*streamedText{}
		}
		st.open[se.Index] = b
		st.blocks = append(st.blocks, b)
		e.add(events.NewTextMessageStartEvent(b.id, events.WithRole("assistant")))
		if se.ContentBlock.Text != "" {
			b.add(se.ContentBlock.Text)
			e.add(events.NewTextMessageContentEvent(b.id, se.ContentBlock.Text))
		}
		t.text[firstNonEmpty(st.msg, "msg")] = b.id
	case "content_block_delta":
		if b := st.open[se.Index]; b != nil && se.Delta.Type == "text_delta" && se.Delta.Text != "" {
			b.add(se.Delta.Text)
			e.add(events.NewTextMessageContentEvent(b.id, se.Delta.Text))
		}
	case "content_block_stop":
		b := st.open[se.Index]
		if b == nil {
			return
		}
		delete(st.open, se.Index)
		b.closed = true
		e.add(events.NewTextMessageEndEvent(b.id))
	}
}

func (e *emitter) fail(msg, code string) {
	e.finish(events.NewRunErrorEvent(msg, events.WithErrorCode(code)))
}

// within adds evs to the open run, or to a short run of their own.
func (e *emitter) within(evs ...events.Event) {
	if e.t.run != "" {
		for _, ev := range evs {
			e.add(ev)
		}
		return
	}
	e.open("tether-"+strconv.FormatInt(e.rec.Seq, 10), e.t.thread, "")
	for _, ev := range evs {
		e.add(ev)
	}
	e.finish(events.NewRunFinishedEvent(e.t.runThread, e.t.run))
}

// Record translates the next record of the log.
func (t *Translator) Record(rec Record) []Event {
	e := &emitter{t: t, rec: rec}
	switch rec.Kind {
	case KindInput:
		var d inputData
		json.Unmarshal(rec.Data, &d)
		e.open(RunID(rec.Turn, d.RunID), firstNonEmpty(d.Thread, t.thread), "the turn ended without a result: the next message started a new one")
		// The message as the agent got it, whoever sent it.
		id := "user-" + strconv.FormatInt(rec.Seq, 10)
		e.add(events.NewTextMessageStartEvent(id, events.WithRole("user")))
		if d.Text != "" {
			e.add(events.NewTextMessageContentEvent(id, d.Text))
		}
		e.add(events.NewTextMessageEndEvent(id))
		if rec.Type != SourceUser {
			e.add(events.NewCustomEvent(CustomInput, events.WithValue(map[string]any{
				"source": rec.Type, "text": d.Text, "turn": rec.Turn})))
		}
	case KindCLI:
		t.cli(e)
	case KindRunner:
		t.runner(e)
	}
	ts := rec.Time.UnixMilli()
	for i := range e.out {
		e.out[i].Event.SetTimestamp(ts)
		e.out[i].ID = strconv.FormatInt(rec.Seq, 10) + ":" + strconv.Itoa(i)
	}
	return e.out
}

func (t *Translator) runner(e *emitter) {
	rec := e.rec
	var d map[string]any
	json.Unmarshal(rec.Data, &d)
	open, _ := d["turn_open"].(bool)
	custom := func(name string) events.Event { return events.NewCustomEvent(name, events.WithValue(d)) }
	switch rec.Type {
	case "started":
		// A new runner process: a turn the last one left open died with it.
		if t.run != "" {
			e.add(events.NewCustomEvent(CustomInterrupted, events.WithValue(map[string]any{"run_id": t.run})))
			e.fail("the turn was interrupted: the runner restarted while it ran", "interrupted")
		}
		e.within(custom("tether.started"))
	case "resume":
		var rs ResumeStatus
		json.Unmarshal(rec.Data, &rs)
		e.within(events.NewCustomEvent(CustomResume, events.WithValue(rs)))
	case "turn_interrupted":
		if t.run != "" {
			e.add(custom(CustomInterrupted))
			e.fail("the turn was interrupted: the runner restarted while it ran", "interrupted")
			return
		}
		e.within(custom(CustomInterrupted))
	case "transcript_repaired":
		e.within(custom(CustomRepaired))
	case "cli_exit", "runner_failed", "stopped":
		name := "tether." + rec.Type
		if rec.Type == "stopped" {
			name = CustomStopped
		}
		if open && t.run != "" {
			e.add(custom(name))
			e.fail(endMessage(rec.Type, d), rec.Type)
			return
		}
		e.within(custom(name))
	default:
		e.within(custom("tether." + rec.Type))
	}
}

// endMessage says why a turn ended without a result.
func endMessage(typ string, d map[string]any) string {
	str := func(k string) string { s, _ := d[k].(string); return s }
	switch typ {
	case "cli_exit":
		return "the agent CLI exited during the turn (" + firstNonEmpty(str("exit"), "no exit status") + ")"
	case "runner_failed":
		return "the runner failed during the turn: " + firstNonEmpty(str("error"), "no reason given")
	default:
		return "the runner stopped during the turn (the CLI: " + firstNonEmpty(str("exit"), "no exit status") + ")"
	}
}

func (t *Translator) cli(e *emitter) {
	rec := e.rec
	ev, err := agent.ParseLine(rec.Data)
	if err != nil {
		// Data is a JSON string holding the line that was not JSON.
		var s string
		json.Unmarshal(rec.Data, &s)
		e.within(events.NewRawEvent(map[string]any{"invalid_line": s}, events.WithSource("claude-cli")))
		return
	}
	seq := strconv.FormatInt(rec.Seq, 10)
	switch {
	case ev.Type == agent.TypeStreamEvent:
		t.streamed(e, ev.Stream)
	case ev.IsInit():
		e.within(events.NewCustomEvent(CustomSession, events.WithValue(map[string]any{"session_id": ev.SessionID, "turn": rec.Turn})))
	case ev.Type == agent.TypeAssistant && ev.Message != nil:
		var out []events.Event
		msg := firstNonEmpty(ev.Message.ID, ev.UUID, "msg")
		for i, b := range ev.Message.Content {
			// The CLI prints each content block of a message as a line of
			// its own, every one with the message's id: the record's seq
			// keeps the blocks apart.
			id := msg + "." + seq + "." + strconv.Itoa(i)
			switch b.Type {
			case "text":
				if b.Text == "" {
					continue
				}
				if id := t.stream.match(b.Text); id != "" {
					// Streamed already, delta by delta.
					if t.text != nil {
						t.text[msg] = id
					}
					continue
				}
				out = append(out,
					events.NewTextMessageStartEvent(id, events.WithRole("assistant")),
					events.NewTextMessageContentEvent(id, b.Text),
					events.NewTextMessageEndEvent(id))
				if t.text != nil {
					t.text[msg] = id
				}
			case "tool_use":
				args := string(b.Input)
				if args == "" {
					args = "{}"
				}
				var opts []events.ToolCallStartOption
				if parent := t.text[msg]; parent != "" {
					opts = append(opts, events.WithParentMessageID(parent))
				}
				out = append(out,
					events.NewToolCallStartEvent(b.ID, b.Name, opts...),
					events.NewToolCallArgsEvent(b.ID, args),
					events.NewToolCallEndEvent(b.ID))
			default:
				out = append(out, events.NewRawEvent(json.RawMessage(b.Raw), events.WithSource("claude-cli")))
			}
		}
		if len(out) > 0 {
			e.within(out...)
		}
	case ev.Type == agent.TypeUser && ev.Message != nil:
		var out []events.Event
		for i, b := range ev.Message.Content {
			if b.Type == "tool_result" {
				out = append(out, events.NewToolCallResultEvent("result."+seq+"."+strconv.Itoa(i), b.ToolUseID, b.ResultText()))
			}
		}
		if len(out) > 0 {
			e.within(out...)
		}
	case ev.Result != nil:
		runID := firstNonEmpty(t.run, rec.Run, RunID(rec.Turn, ""))
		if t.run == "" {
			// A result outside a turn: a run of its own that it ends.
			e.open(runID, t.thread, "")
		}
		if ev.Result.IsError {
			msg := ev.Result.Result
			if len(ev.Result.Errors) > 0 {
				msg = strings.Join(ev.Result.Errors, "; ")
			}
			e.fail(firstNonEmpty(msg, ev.Result.Subtype, "the turn failed"), firstNonEmpty(ev.Result.Subtype, "error"))
		} else {
			e.finish(events.NewRunFinishedEventWithOptions(t.runThread, runID, events.WithResult(map[string]any{
				"result": ev.Result.Result, "num_turns": ev.Result.NumTurns, "total_cost_usd": ev.Result.TotalCostUSD, "session_id": ev.SessionID})))
		}
	default:
		e.within(events.NewRawEvent(json.RawMessage(ev.Raw), events.WithSource("claude-cli")))
	}
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
