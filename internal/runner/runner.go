package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tether-dev/tether/internal/agent"
	"github.com/tether-dev/tether/internal/fsutil"
)

// Errors Send returns.
var (
	ErrNotReady = errors.New("runner not ready: the agent CLI is starting or resume is not decided yet")
	ErrStopping = errors.New("runner is stopping: it takes no new messages")
)

// Runner drives one CLI process for one thread. Create it with New, run it
// with Run; Send, Status, Ready and Events may be called from any goroutine.
type Runner struct {
	cfg     Config
	log     *slog.Logger
	ids     *agent.SessionIDs
	events  *EventLog
	Metrics *Metrics

	inbox    chan input
	ready    chan struct{}
	done     chan struct{} // closed when Run returns
	openOnce sync.Once
	openErr  error
	history  []Record // the log as it was at open, for the recap and interrupted turn
	keyCwd   string   // Cwd as the CLI sees it (symlinks resolved): its transcripts' key

	mu     sync.Mutex
	status Status

	// Owned by Run's goroutine.
	cli        *cliProc
	turn       int64
	turnOpen   bool
	turnSource string
	turnRunID  string
	turnInit   bool
	turnSent   time.Time
	firstByte  bool
	sessionID  string
	resume     ResumeStatus
	runs       map[string]Record // client run id -> its latest input record
}

// inputData is the Data of a KindInput record.
type inputData struct {
	Text  string `json:"text"`
	RunID string `json:"run_id,omitempty"`
	// Thread is the AG-UI thread id the client gave with the message.
	Thread string `json:"thread,omitempty"`
}

// RunID is the AG-UI run id of a turn: the client's when it gave one.
func RunID(turn int64, clientRunID string) string {
	if clientRunID != "" {
		return clientRunID
	}
	return fmt.Sprintf("turn-%d", turn)
}

type input struct {
	text, source string
	runID        string      // the AG-UI run id a client gave, "" otherwise
	thread       string      // the AG-UI thread id a client gave, "" otherwise
	started      chan Record // receives the input record once written to the CLI; may be nil
}

// New checks cfg and prepares the workspace's state directories. It does not
// start the CLI.
func New(cfg Config) (*Runner, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	r := &Runner{
		cfg:     cfg,
		log:     cfg.Logger.With("thread", cfg.Thread),
		ids:     agent.OpenSessionIDs(cfg.Workspace),
		Metrics: newMetrics(),
		inbox:   make(chan input, 64),
		ready:   make(chan struct{}),
		done:    make(chan struct{}),
	}
	r.status = Status{Thread: cfg.Thread, State: StateStarting, Resume: ResumeStatus{Outcome: ResumeNone}, RunnerPID: os.Getpid()}
	for _, d := range []string{StateDir, ClaudeDir} {
		if err := os.MkdirAll(filepath.Join(cfg.Workspace, d), 0o755); err != nil {
			return nil, fmt.Errorf("runner: workspace %s: %w", cfg.Workspace, err)
		}
	}
	if err := os.MkdirAll(cfg.Cwd, 0o755); err != nil {
		return nil, fmt.Errorf("runner: cwd %s: %w", cfg.Cwd, err)
	}
	var err error
	if r.keyCwd, err = agent.ResolveCwd(cfg.Cwd); err != nil {
		return nil, fmt.Errorf("runner: cwd %s: %w", cfg.Cwd, err)
	}
	return r, nil
}

// Open opens the event log, so that Events works before Run has started the
// CLI. Run calls it; calling it earlier is optional.
func (r *Runner) Open() error {
	r.openOnce.Do(func() {
		p := filepath.Join(r.cfg.Workspace, EventLogFile)
		l, recs, err := OpenEventLog(p)
		if errors.Is(err, ErrDamagedLog) {
			// The log is the runner's own record, not the conversation
			// (the CLI's transcript is): keep the damaged file for a
			// person to look at and go on with a new one. Only a recap
			// would miss it.
			aside := p + ".damaged-" + time.Now().UTC().Format("20060102T150405Z")
			r.log.Error("the event log is damaged; moved aside, starting a new one", "err", err, "kept_in", aside)
			if rerr := os.Rename(p, aside); rerr != nil {
				r.openErr = fmt.Errorf("%w; moving it aside failed too: %v", err, rerr)
				return
			}
			l, recs, err = OpenEventLog(p)
		}
		if err != nil {
			r.openErr = err
			return
		}
		r.events, r.history = l, recs
	})
	return r.openErr
}

// Events is the durable event log (nil before Open).
func (r *Runner) Events() *EventLog { return r.events }

// Status returns a copy of the current status.
func (r *Runner) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// Ready is closed once the CLI is up and the resume outcome decided.
func (r *Runner) Ready() <-chan struct{} { return r.ready }

// Done is closed when Run has returned.
func (r *Runner) Done() <-chan struct{} { return r.done }

// Send queues text as a user message and returns its input record (Turn is
// the turn number) once the CLI has been handed it. runID is the client's
// AG-UI run id, kept in the record ("" for none). Messages are delivered one
// turn at a time, in order. If ctx ends first the message may still be
// delivered later.
func (r *Runner) Send(ctx context.Context, text, runID string) (Record, error) {
	return r.SendThread(ctx, text, runID, "")
}

// SendThread is Send with the AG-UI thread id the client gave: the run's
// events carry it.
func (r *Runner) SendThread(ctx context.Context, text, runID, thread string) (Record, error) {
	select {
	case <-r.ready:
	default:
		return Record{}, ErrNotReady
	}
	if st := r.Status().State; st != StateReady {
		return Record{}, ErrStopping
	}
	in := input{text: text, source: SourceUser, runID: runID, thread: thread, started: make(chan Record, 1)}
	select {
	case r.inbox <- in:
	case <-ctx.Done():
		return Record{}, ctx.Err()
	case <-r.done:
		return Record{}, ErrStopping
	}
	select {
	case rec := <-in.started:
		return rec, nil
	case <-ctx.Done():
		return Record{}, ctx.Err()
	case <-r.done:
		return Record{}, ErrStopping
	}
}

func (r *Runner) updateStatus(f func(*Status)) {
	r.mu.Lock()
	f(&r.status)
	r.status.UpdatedAt = time.Now().UTC()
	st := r.status
	r.mu.Unlock()
	data, _ := json.MarshalIndent(st, "", "  ")
	if err := fsutil.WriteFileAtomic(filepath.Join(r.cfg.Workspace, StatusFile), append(data, '\n'), 0o644); err != nil {
		r.log.Error("write runner status", "err", err)
	}
}

// Run starts the CLI (resuming the thread's session when one is known),
// delivers what is pending, then serves messages until ctx ends (SIGTERM) or
// the CLI exits. It returns nil after a clean stop and an error naming what
// broke otherwise; the status file says the same.
func (r *Runner) Run(ctx context.Context) (err error) {
	defer close(r.done)
	defer func() {
		if err != nil {
			r.log.Error("runner failed", "err", err)
			r.updateStatus(func(s *Status) { s.State, s.Error = StateFailed, err.Error() })
			if r.events != nil {
				r.append(KindRunner, "runner_failed", mustJSON(map[string]any{"error": err.Error(), "turn_open": r.turnOpen, "run_id": r.turnRunID}), true)
			}
		}
		if r.events != nil {
			r.events.Close()
		}
	}()
	if err := r.Open(); err != nil {
		return err
	}
	r.updateStatus(func(*Status) {})
	if err := r.writeCLISettings(); err != nil {
		return err
	}
	pending, err := r.start()
	if err != nil {
		return err
	}
	// Messages about to be delivered (initial prompt, notice, recap) count
	// as an open turn already, so a supervisor waiting for the session to go
	// idle does not see a gap between ready and the first turn.
	r.updateStatus(func(s *Status) { s.State, s.TurnOpen = StateReady, len(pending) > 0 })
	r.Metrics.ready.Set(1)
	defer r.Metrics.ready.Set(0)
	close(r.ready)
	return r.loop(ctx, pending)
}

// writeCLISettings makes the CLI keep transcripts: its default cleanup
// deletes transcripts older than 30 days, and a resumed session needs its
// transcript however old it is.
func (r *Runner) writeCLISettings() error {
	p := filepath.Join(r.cfg.Workspace, ClaudeDir, "settings.json")
	settings := map[string]any{}
	data, err := os.ReadFile(p)
	switch {
	case err == nil:
		if err := json.Unmarshal(data, &settings); err != nil || settings == nil {
			return fmt.Errorf("CLI settings %s are not a JSON object (%v); fix the file", p, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("CLI settings %s: %w", p, err)
	}
	const keep = 36500 // days; the CLI accepts any positive number
	if v, ok := settings["cleanupPeriodDays"].(float64); ok && v >= keep {
		return nil
	}
	settings["cleanupPeriodDays"] = keep
	out, _ := json.MarshalIndent(settings, "", "  ")
	return fsutil.WriteFileAtomic(p, append(out, '\n'), 0o644)
}

// logHistory is what the event log says about the runner's previous lives.
type logHistory struct {
	lastTurn int64
	// open is the last turn if it has an input but no result: a crash
	// interrupted it.
	open *openTurn
	// runs maps client run ids to their latest input record.
	runs map[string]Record
}

type openTurn struct {
	turn         int64
	source, text string
	runID        string
	clientRunID  string
	initSeen     bool // the CLI took the message
}

func summarize(recs []Record) logHistory {
	h := logHistory{runs: map[string]Record{}}
	for _, rec := range recs {
		if rec.Turn > h.lastTurn {
			h.lastTurn = rec.Turn
		}
		switch {
		case rec.Kind == KindInput:
			var d inputData
			json.Unmarshal(rec.Data, &d)
			h.open = &openTurn{turn: rec.Turn, source: rec.Type, text: d.Text, runID: RunID(rec.Turn, d.RunID), clientRunID: d.RunID}
			if d.RunID != "" {
				h.runs[d.RunID] = rec
			}
		case rec.Kind == KindCLI && rec.Type == agent.TypeSystem && h.open != nil && h.open.turn == rec.Turn:
			if ev, err := agent.ParseLine(rec.Data); err == nil && ev.IsInit() {
				h.open.initSeen = true
			}
		case rec.Kind == KindCLI && rec.Type == agent.TypeResult && h.open != nil && h.open.turn == rec.Turn:
			h.open = nil
		}
	}
	return h
}

// start launches the CLI, resuming when a session id is known, decides the
// resume outcome from what the CLI says and returns the messages to deliver
// first.
func (r *Runner) start() ([]input, error) {
	// First in every life: AG-UI clients learn here that a turn the last
	// runner left open will not finish.
	if _, err := r.append(KindRunner, "started", mustJSON(map[string]any{"pid": os.Getpid()}), false); err != nil {
		return nil, err
	}
	hist := summarize(r.history)
	r.turn, r.runs = hist.lastTurn, hist.runs
	prev, err := r.ids.Get(r.cfg.Thread)
	if err != nil {
		return nil, err
	}
	rs := ResumeStatus{Outcome: ResumeNone, PreviousID: prev}
	if prev != "" {
		tp := agent.TranscriptPath(filepath.Join(r.cfg.Workspace, ClaudeDir), r.keyCwd, prev)
		rep, err := agent.RepairTranscript(tp)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			rs.Outcome, rs.Reason = ResumeFailed, fmt.Sprintf("transcript %s is missing", tp)
		case err != nil:
			return nil, fmt.Errorf("resume session %s of thread %s: %w; the transcript is left as it is", prev, r.cfg.Thread, err)
		case rep.Changed():
			rs.Repaired, rs.CutSavedTo = rep.Cut > 0, rep.SavedTo
			r.log.Warn("repaired the transcript's torn last line before resuming", "transcript", tp, "cut_bytes", rep.Cut, "kept_in", rep.SavedTo, "added_newline", rep.AddedNewline)
			r.append(KindRunner, "transcript_repaired", mustJSON(map[string]any{
				"transcript": tp, "cut_bytes": rep.Cut, "kept_in": rep.SavedTo, "added_newline": rep.AddedNewline}), true)
		}
	}
	var hs handshake
	if prev != "" && rs.Outcome != ResumeFailed {
		p, err := r.launch(prev)
		if err != nil {
			return nil, err
		}
		hs, err = r.handshake(p, prev)
		if err != nil {
			return nil, err
		}
		if hs.resumeError != "" {
			rs.Outcome, rs.Reason = ResumeFailed, "the CLI refused --resume "+prev+": "+hs.resumeError
		} else {
			rs.Outcome, rs.SessionID = ResumeResumed, prev
			r.cli, r.sessionID = p, prev
		}
	}
	if r.cli == nil {
		p, err := r.launch("")
		if err != nil {
			return nil, err
		}
		if hs, err = r.handshake(p, ""); err != nil {
			return nil, err
		}
		r.cli = p
	}
	if hist.open != nil && hist.open.initSeen {
		rs.Interrupted = hist.open.turn
	}
	r.resume = rs
	r.updateStatus(func(s *Status) {
		s.Resume, s.SessionID, s.CLIPID, s.CLI, s.Turns = rs, r.sessionID, r.cli.cmd.Process.Pid, hs.version, r.turn
	})
	r.Metrics.resume(rs.Outcome)
	if prev != "" {
		r.reportResume(rs)
	}

	// What to deliver, in order.
	var pending []input
	if r.cfg.InitialPrompt != "" {
		if _, err := os.Stat(filepath.Join(r.cfg.Workspace, InitialPromptMarker)); errors.Is(err, fs.ErrNotExist) {
			pending = append(pending, input{text: r.cfg.InitialPrompt, source: SourceInitial})
		}
	}
	switch {
	case rs.Outcome == ResumeFailed:
		pending = append(pending, input{text: r.recap(rs, hist), source: SourceRecap})
	case rs.Interrupted > 0 && !r.cfg.NoInterruptNotice:
		pending = append(pending, input{text: r.cfg.InterruptNotice, source: SourceNotice})
	}
	if rs.Interrupted > 0 {
		r.append(KindRunner, "turn_interrupted", mustJSON(map[string]any{"turn": rs.Interrupted, "run_id": hist.open.runID}), true)
	}
	// A client's message the CLI never took (the crash came between the
	// runner logging it and the CLI starting the turn) is delivered again.
	if o := hist.open; o != nil && !o.initSeen && (o.source == SourceUser || o.source == SourceRedeliver) {
		pending = append(pending, input{text: o.text, source: SourceRedeliver, runID: o.clientRunID})
	}
	return pending, nil
}

// reportResume makes the outcome loud: a log line, a durable event (AG-UI
// clients see it as a CUSTOM event) and the status file (written by start).
func (r *Runner) reportResume(rs ResumeStatus) {
	if rs.Outcome == ResumeFailed {
		r.log.Error("RESUME FAILED: starting a fresh CLI session seeded with a recap from the runner's event log",
			"previous_session", rs.PreviousID, "reason", rs.Reason)
	} else {
		r.log.Info("resumed the CLI session", "session", rs.SessionID, "repaired", rs.Repaired, "interrupted_turn", rs.Interrupted)
	}
	if _, err := r.append(KindRunner, "resume", mustJSON(rs), true); err != nil {
		r.log.Error("record resume outcome", "err", err)
	}
}

// recap builds the first message of a fresh session that replaces one that
// could not be resumed, from the runner's own log: the last user and
// assistant messages.
func (r *Runner) recap(rs ResumeStatus, hist logHistory) string {
	type msg struct{ who, text string }
	var msgs []msg
	for _, rec := range r.history {
		switch {
		case rec.Kind == KindInput && (rec.Type == SourceUser || rec.Type == SourceInitial || rec.Type == SourceRedeliver):
			var d inputData
			json.Unmarshal(rec.Data, &d)
			msgs = append(msgs, msg{"User", d.Text})
		case rec.Kind == KindCLI && rec.Type == agent.TypeAssistant:
			ev, err := agent.ParseLine(rec.Data)
			if err == nil && ev.ParentToolUseID == "" {
				if t := ev.Message.Text(); t != "" {
					msgs = append(msgs, msg{"Assistant", t})
				}
			}
		}
	}
	const maxMsgs, maxChars = 6, 1500
	if len(msgs) > maxMsgs {
		msgs = msgs[len(msgs)-maxMsgs:]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[tether] The previous conversation (session %s) could not be resumed (%s), so this is a new session.", rs.PreviousID, rs.Reason)
	if hist.open != nil && hist.open.initSeen {
		b.WriteString(" Its last turn was interrupted by a crash.")
	}
	if len(msgs) == 0 {
		b.WriteString(" The runner's log holds no messages of it.")
	} else {
		b.WriteString(" The end of it, from the runner's log:\n")
		for _, m := range msgs {
			t := m.text
			if len(t) > maxChars {
				t = t[:maxChars] + " [...]"
			}
			fmt.Fprintf(&b, "\n%s: %s\n", m.who, t)
		}
	}
	b.WriteString("\nContinue from there. Check the state of the workspace before repeating work.")
	return b.String()
}

// append adds a runner-side record to the log as part of the current turn.
func (r *Runner) append(kind, typ string, data json.RawMessage, durable bool) (Record, error) {
	run := ""
	if r.turn > 0 {
		run = r.turnRunID
	}
	return r.events.AppendRecord(Record{Turn: r.turn, Run: run, Kind: kind, Type: typ, Data: data}, durable)
}

// recordCLI parses a CLI line and appends it to the log as part of turn;
// results and init lines durably.
func (r *Runner) recordCLI(turn int64, line []byte) agent.Event {
	ev, err := agent.ParseLine(line)
	r.recordEvent(turn, ev, err)
	return ev
}

// recordEvent appends a parsed CLI line (perr: the parse error, if any).
func (r *Runner) recordEvent(turn int64, ev agent.Event, perr error) {
	if perr != nil {
		r.log.Warn("the agent CLI printed a line that is not JSON; kept in the event log", "line", truncate(string(ev.Raw), 200))
		b, _ := json.Marshal(string(ev.Raw))
		r.events.AppendRecord(Record{Turn: turn, Run: r.runOf(turn), Kind: KindCLI, Type: "invalid", Data: b}, false)
		return
	}
	durable := ev.Type == agent.TypeResult || ev.IsInit()
	if _, err := r.events.AppendRecord(Record{Turn: turn, Run: r.runOf(turn), Kind: KindCLI, Type: ev.Type, Data: ev.Raw}, durable); err != nil {
		r.log.Error("append to event log", "err", err)
	}
}

func (r *Runner) runOf(turn int64) string {
	if turn > 0 && turn == r.turn {
		return r.turnRunID
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// loop serves messages until ctx ends or the CLI exits.
func (r *Runner) loop(ctx context.Context, pending []input) error {
	var silence *time.Timer
	var silenceC <-chan time.Time
	stopSilence := func() {
		if silence != nil {
			silence.Stop()
		}
		silenceC = nil
	}
	for {
		if !r.turnOpen && len(pending) > 0 {
			in := pending[0]
			pending = pending[1:]
			started, err := r.begin(in)
			if err != nil {
				return err
			}
			if started {
				silence = time.NewTimer(r.cfg.TurnStartTimeout)
				silenceC = silence.C
			}
			continue
		}
		select {
		case <-ctx.Done():
			stopSilence()
			return r.stop(pending)
		case in := <-r.inbox:
			pending = append(pending, in)
		case l, ok := <-r.cli.lines:
			if !ok {
				<-r.cli.done
				stopSilence()
				r.append(KindRunner, "cli_exit", mustJSON(map[string]any{
					"exit": r.cli.exitDesc(), "turn_open": r.turnOpen, "run_id": r.turnRunID, "stderr": r.cli.stderr.String()}), true)
				return fmt.Errorf("the agent CLI exited unexpectedly (%s) with turn %d %s; stderr: %q",
					r.cli.exitDesc(), r.turn, map[bool]string{true: "in flight", false: "finished"}[r.turnOpen], r.cli.stderr.String())
			}
			stopSilence()
			if err := r.handleLine(l); err != nil {
				r.cli.kill()
				return err
			}
		case <-silenceC:
			r.cli.kill()
			return fmt.Errorf("the agent CLI said nothing for %s after turn %d was sent to it; killed it (stderr: %q)",
				r.cfg.TurnStartTimeout, r.turn, r.cli.stderr.String())
		}
	}
}

// begin starts a turn: the input is logged durably first, so a crash
// right after still knows the turn was started. A client's run id that
// already has a turn is not sent again (a client retrying after a lost
// answer): the caller gets that turn's input record. It reports whether a
// turn was started.
func (r *Runner) begin(in input) (bool, error) {
	if in.runID != "" && in.source == SourceUser {
		if rec, ok := r.runs[in.runID]; ok {
			r.log.Info("run already taken; not sent to the agent again", "run", in.runID, "turn", rec.Turn)
			if in.started != nil {
				in.started <- rec
			}
			return false, nil
		}
	}
	r.turn++
	r.turnOpen, r.turnSource, r.turnInit, r.firstByte = true, in.source, false, false
	r.turnRunID = RunID(r.turn, in.runID)
	rec, err := r.append(KindInput, in.source, mustJSON(inputData{Text: in.text, RunID: in.runID, Thread: in.thread}), true)
	if err != nil {
		return false, err
	}
	if in.runID != "" {
		r.runs[in.runID] = rec
	}
	r.turnSent = time.Now()
	if err := r.cli.write(agent.UserLine(in.text)); err != nil {
		// The CLI died; its exit is reported by the loop.
		r.log.Warn("write message to the agent CLI", "turn", r.turn, "err", err)
	}
	if in.started != nil {
		in.started <- rec
	}
	r.updateStatus(func(s *Status) { s.Turns, s.TurnOpen = r.turn, true })
	r.log.Info("turn started", "turn", r.turn, "source", in.source)
	return true, nil
}

func (r *Runner) handleLine(l cliLine) error {
	ev, perr := parseCLILine(l.b)
	if perr == nil && ev.IsInit() {
		// The id goes to disk before anything else of the turn is
		// recorded or forwarded: a kill from here on cannot lose it.
		if err := r.onInit(ev, l.at); err != nil {
			return err
		}
	}
	if perr == nil && ev.Type == "control_response" {
		return nil // answers to the runner's own requests
	}
	// The turn's metrics and status are updated before its events go out:
	// a client that sees RUN_FINISHED and reads /metrics or /status at once
	// must find the turn counted.
	if ev.Type == agent.TypeAssistant && !r.firstByte && r.turnOpen {
		r.firstByte = true
		r.Metrics.firstByteObs(l.at.Sub(r.turnSent))
	}
	finished := ev.Result != nil && r.turnOpen
	if finished {
		r.turnOpen = false
		r.Metrics.turn(ev.Result.IsError)
		r.updateStatus(func(s *Status) { s.TurnOpen = false })
	}
	r.recordEvent(r.turn, ev, perr)
	r.Metrics.event(time.Since(l.at))
	if finished {
		r.log.Info("turn finished", "turn", r.turn, "subtype", ev.Result.Subtype, "is_error", ev.Result.IsError)
	}
	return nil
}

// parseCLILine is agent.ParseLine, except that a big line that is neither a
// system line nor a result (a tool's output, a long answer) is only checked
// and typed: the runner needs nothing more of it, and parsing it whole holds
// several copies of it at once. The runner shares the agent's memory limit.
func parseCLILine(line []byte) (agent.Event, error) {
	if len(line) <= bigRecord {
		return agent.ParseLine(line)
	}
	var head struct {
		Type string `json:"type"`
	}
	switch err := json.Unmarshal(line, &head); {
	case err != nil, head.Type == "", head.Type == agent.TypeSystem, head.Type == agent.TypeResult, head.Type == "control_response":
		return agent.ParseLine(line)
	}
	return agent.Event{Type: head.Type, Raw: bytes.TrimRight(line, "\r\n")}, nil
}

func (r *Runner) onInit(ev agent.Event, readAt time.Time) error {
	r.turnInit = true
	id := ev.SessionID
	if id == "" {
		r.log.Warn("the agent CLI's init line carries no session_id", "line", truncate(string(ev.Raw), 200))
		return nil
	}
	if id != r.sessionID {
		if _, err := r.ids.Set(r.cfg.Thread, id); err != nil {
			return fmt.Errorf("persist CLI session id %s of thread %s: %w; stopping, since a crash now would lose the conversation", id, r.cfg.Thread, err)
		}
		r.Metrics.initDurableObs(time.Since(readAt))
		r.requestSnapshot("session-id", id)
		if r.resume.Outcome == ResumeResumed && r.sessionID != "" {
			// Some CLI versions continue a resumed conversation under a
			// new id: still a resume, under the new id.
			r.resume.SessionID = id
			r.log.Info("the CLI continues the resumed conversation under a new session id", "previous", r.sessionID, "session", id)
			r.append(KindRunner, "resume", mustJSON(r.resume), true)
		}
		r.sessionID = id
		r.updateStatus(func(s *Status) { s.SessionID, s.Resume = id, r.resume })
		r.log.Info("CLI session id persisted", "session", id, "file", r.ids.Path())
	}
	if r.turnSource == SourceInitial {
		p := filepath.Join(r.cfg.Workspace, InitialPromptMarker)
		data := mustJSON(map[string]any{"session_id": id, "turn": r.turn, "time": time.Now().UTC()})
		if err := fsutil.WriteFileAtomic(p, append(data, '\n'), 0o644); err != nil {
			return fmt.Errorf("record that the initial prompt was delivered: %w", err)
		}
	}
	return nil
}

// requestSnapshot tells the sync side to snapshot now: see
// SnapshotRequestFile.
func (r *Runner) requestSnapshot(reason, id string) {
	data := mustJSON(map[string]any{"reason": reason, "session_id": id, "time": time.Now().UTC()})
	if err := fsutil.WriteFileAtomic(filepath.Join(r.cfg.Workspace, SnapshotRequestFile), append(data, '\n'), 0o644); err != nil {
		r.log.Error("request a snapshot from the sync side", "err", err)
	}
}

// stop ends the session on SIGTERM: no new messages, the CLI's stdin is
// closed so it finishes the turn in flight and exits, within StopTimeout.
func (r *Runner) stop(pending []input) error {
	r.updateStatus(func(s *Status) { s.State = StateStopping })
	r.log.Info("stopping: closing the agent CLI's input", "turn_open", r.turnOpen, "undelivered", len(pending))
	r.cli.stdin.Close()
	timer := time.NewTimer(r.cfg.StopTimeout)
	defer timer.Stop()
	for {
		select {
		case l, ok := <-r.cli.lines:
			if !ok {
				<-r.cli.done
				r.append(KindRunner, "stopped", mustJSON(map[string]any{"exit": r.cli.exitDesc(), "turn_open": r.turnOpen, "run_id": r.turnRunID}), true)
				r.updateStatus(func(s *Status) { s.State = StateStopped })
				return nil
			}
			if err := r.handleLine(l); err != nil {
				r.cli.kill()
				return err
			}
		case <-timer.C:
			r.log.Warn("the agent CLI did not exit in time after its input was closed; killing it", "budget", r.cfg.StopTimeout)
			r.cli.kill()
			r.append(KindRunner, "stopped", mustJSON(map[string]any{"exit": "killed after " + r.cfg.StopTimeout.String(), "turn_open": r.turnOpen, "run_id": r.turnRunID}), true)
			r.updateStatus(func(s *Status) { s.State = StateStopped })
			return nil
		}
	}
}
