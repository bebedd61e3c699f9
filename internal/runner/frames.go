package runner

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/ag-ui-protocol/ag-ui/sdks/community/go/pkg/core/events"
)

// frameLog is the AG-UI rendering of an EventLog: every record's SSE frames,
// encoded once, in order, by one goroutine and appended to an unlinked file.
// Clients stream byte ranges of that file through a small buffer. So what a
// client costs does not depend on the size of the events it is sent: a
// 15 MiB tool output is in memory once, while it is rendered, not once per
// client that has yet to read it.
//
// The file is derived data: it lives in CacheDir (left out of snapshots) and
// is unlinked at once, so it never outlives the process; a new runner
// renders the log again.
type frameLog struct {
	src    *EventLog
	thread string
	tr     *Translator // only the rendering goroutine uses it
	f      *os.File
	done   <-chan struct{} // closed when no record will be appended any more

	mu      sync.Mutex
	recs    []frameRec // recs[i] is record Seq i+1
	evStart []int64    // where each event starts, all records' events in order
	size    int64
	notify  chan struct{} // closed and replaced whenever recs grows or the log ends
	ended   bool          // every record there will ever be is rendered
	lives   int           // "started" records rendered: runner processes of the session
	err     error         // rendering stopped on this error
}

// frameRec is what streams need of one record without reading it again.
type frameRec struct {
	off, end int64 // its frames' bytes
	firstEv  int   // index in evStart of its first event
	nEv      int
	runs     []runSeg // its events, by the run they belong to
	// textBefore and textAfter are the text message the model was
	// streaming (partial messages span records) when the record's events
	// began and when they ended, "" when none.
	textBefore, textAfter string
}

// runSeg is the events [from, to) of a record that belong to run; ends: the
// last of them ends it.
type runSeg struct {
	run, thread string
	from, to    int
	ends        bool
}

// segments groups evs by run.
func segments(evs []Event) []runSeg {
	var segs []runSeg
	for i, ev := range evs {
		if n := len(segs); n > 0 && segs[n-1].run == ev.Run && !segs[n-1].ends {
			segs[n-1].to = i + 1
		} else {
			segs = append(segs, runSeg{run: ev.Run, thread: ev.Thread, from: i, to: i + 1})
		}
		switch ev.Event.Type() {
		case events.EventTypeRunFinished, events.EventTypeRunError:
			segs[len(segs)-1].ends = true
		}
	}
	return segs
}

// runEvents is the filter of run's events, up to its end.
func runEvents(run string) func(frameRec) (from, to int, last bool) {
	return func(fr frameRec) (int, int, bool) {
		for _, sg := range fr.runs {
			if sg.run == run {
				return sg.from, sg.to, sg.ends
			}
		}
		return 0, 0, false
	}
}

// allEvents is the filter of every event.
func allEvents(fr frameRec) (from, to int, last bool) { return 0, fr.nEv, false }

// openFrameLog starts rendering src (from its first record) into a new
// unlinked file in dir. done is closed when src gets no more records.
func openFrameLog(src *EventLog, thread, dir string, done <-chan struct{}) (*frameLog, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("AG-UI frame cache: %w", err)
	}
	f, err := os.CreateTemp(dir, "agui-frames-*.sse")
	if err != nil {
		return nil, fmt.Errorf("AG-UI frame cache: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("AG-UI frame cache: unlink %s: %w", f.Name(), err)
	}
	fl := &frameLog{src: src, thread: thread, tr: NewTranslator(thread), f: f, done: done, notify: make(chan struct{})}
	go fl.render()
	return fl, nil
}

// bigRecord is the size of record Data past which rendering it ends with a
// garbage collection.
const bigRecord = 1 << 20

func (fl *frameLog) render() {
	w := bufio.NewWriterSize(fl.f, 64<<10)
	var after int64
	for {
		n, notify := fl.src.Last()
		for after < n {
			if err := fl.renderNext(w, after+1); err != nil {
				fl.stop(fmt.Errorf("render AG-UI events: %w", err))
				return
			}
			after++
		}
		select {
		case <-notify:
		case <-fl.done:
			if n2, _ := fl.src.Last(); n2 == after {
				fl.stop(nil)
				return
			}
		}
	}
}

// renderNext renders record seq, the one after the last rendered. It
// reads one record at a time: rendering holds a few copies of the record it
// works on, whatever the size of a batch would be.
func (fl *frameLog) renderNext(w *bufio.Writer, seq int64) error {
	recs, err := fl.src.ReadAfter(seq-1, 1)
	if err != nil {
		return err
	}
	if len(recs) != 1 {
		return fmt.Errorf("event log %s: record %d is missing", fl.src.Path(), seq)
	}
	rec := recs[0]
	recs = nil
	// The runner has just parsed and written a big record (copies of it,
	// garbage by now) and rendering makes a few more: collecting between the
	// steps keeps the peak at about one set of copies. The runner shares the
	// agent's memory limit.
	big := len(rec.Data) > bigRecord
	if big {
		runtime.GC()
		defer runtime.GC()
	}
	started := rec.Kind == KindRunner && rec.Type == "started"
	fr := frameRec{off: fl.size, textBefore: fl.tr.streaming()}
	evs := fl.tr.Record(rec)
	fr.runs, fr.textAfter = segments(evs), fl.tr.streaming()
	rec.Data = nil
	if big {
		runtime.GC()
	}
	starts := make([]int64, 0, len(evs))
	pos := fl.size // only this goroutine changes size
	for i, ev := range evs {
		data, err := ev.Event.ToJSON()
		if err != nil {
			return fmt.Errorf("encode event %s: %w", ev.ID, err)
		}
		evs[i].Event = nil
		starts = append(starts, pos)
		// Unnamed: an EventSource's onmessage sees only events without
		// an "event:" line; the type is in the data.
		n, _ := fmt.Fprintf(w, "id: %s\ndata: ", ev.ID)
		m, _ := w.Write(data)
		k, err := w.WriteString("\n\n")
		if err != nil {
			return fmt.Errorf("AG-UI frame cache: %w", err)
		}
		pos += int64(n + m + k)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("AG-UI frame cache: %w", err)
	}
	// Published once the bytes are in the file: a reader never gets an
	// offset it cannot read.
	fr.end, fr.firstEv, fr.nEv = pos, len(fl.evStart), len(starts)
	fl.mu.Lock()
	fl.recs = append(fl.recs, fr)
	if started {
		fl.lives++
	}
	fl.evStart = append(fl.evStart, starts...)
	fl.size = pos
	close(fl.notify)
	fl.notify = make(chan struct{})
	fl.mu.Unlock()
	return nil
}

func (fl *frameLog) stop(err error) {
	fl.mu.Lock()
	fl.ended, fl.err = true, err
	close(fl.notify)
	fl.notify = make(chan struct{})
	fl.mu.Unlock()
}

// errStreamEnded is what next returns once the log has no more records.
var errStreamEnded = errors.New("the runner has ended and every event was sent")

// span is a run of bytes of the frame file to send, [off, end).
type span struct {
	off, end int64
	next     int64 // the record to go on from
	last     bool  // the filter said the stream ends with this span
}

// next waits until record seq is rendered, then returns the longest run of
// contiguous bytes made of the events filter lets through, from record seq
// on and starting skip events into it. Records filter refuses are passed
// over.
func (fl *frameLog) next(ctx context.Context, seq int64, skip int, filter func(frameRec) (from, to int, last bool)) (span, error) {
	for {
		fl.mu.Lock()
		n, notify, ended, err := int64(len(fl.recs)), fl.notify, fl.ended, fl.err
		if seq <= n {
			sp := span{off: -1, next: seq}
			for ; sp.next <= n; sp.next++ {
				fr := fl.recs[sp.next-1]
				a, b, last := filter(fr)
				if sp.next == seq {
					a = max(a, skip)
				}
				if a < b {
					from, to := fl.eventOffset(fr, a), fl.eventOffset(fr, b)
					if sp.off >= 0 && from != sp.end {
						break
					}
					if sp.off < 0 {
						sp.off = from
					}
					sp.end = to
				} else if sp.off >= 0 {
					break
				}
				if last {
					sp.last = true
					sp.next++
					break
				}
			}
			fl.mu.Unlock()
			if sp.off < 0 {
				sp.off, sp.end = 0, 0
			}
			return sp, nil
		}
		fl.mu.Unlock()
		switch {
		case err != nil:
			return span{}, err
		case ended:
			return span{}, errStreamEnded
		}
		select {
		case <-notify:
		case <-ctx.Done():
			return span{}, ctx.Err()
		}
	}
}

// eventOffset is where event k of fr starts in the file (its end, for k
// past its last event). Call with mu held.
func (fl *frameLog) eventOffset(fr frameRec, k int) int64 {
	if k >= fr.nEv {
		return fr.end
	}
	return fl.evStart[fr.firstEv+k]
}

// openAt is what is open at a point of the stream, as frames: the run's
// RUN_STARTED, and the starts of a text message or tool call the point
// cuts in two. Between runs, both are empty.
type openAt struct {
	runStarted, starts []byte
}

// bytes is the frames a stream that resumes at the point starts with, so
// that it is a valid AG-UI stream on its own.
func (o openAt) bytes() []byte { return append(append([]byte(nil), o.runStarted...), o.starts...) }

// liveEnd is the record a stream that starts now begins with: the one
// after the last rendered.
func (fl *frameLog) liveEnd() int64 {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return int64(len(fl.recs)) + 1
}

// lifeCount is how many runner processes the rendered log shows.
func (fl *frameLog) lifeCount() int {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	return fl.lives
}

// resumePrefix returns what is open before event skip of record seq.
// Between runs, or at a point never rendered, nothing.
func (fl *frameLog) resumePrefix(seq int64, skip int) (openAt, error) {
	fl.mu.Lock()
	n := int64(len(fl.recs))
	if seq < 1 || seq > n+1 || (seq == n+1 && skip > 0) {
		fl.mu.Unlock()
		return openAt{}, nil
	}
	// The segment of the last event before the resume point.
	var sg runSeg
	var fr frameRec
	at := -1 // that event's index in fr
	for r := min(seq, n); r >= 1 && at < 0; r-- {
		fr = fl.recs[r-1]
		k := fr.nEv - 1
		if r == seq {
			k = min(skip, fr.nEv) - 1
		}
		for _, s := range fr.runs {
			if k >= s.from && k < s.to {
				sg, at = s, k
			}
		}
		if r == seq && k >= 0 && at < 0 {
			break
		}
	}
	if at < 0 || (sg.ends && at == sg.to-1) {
		fl.mu.Unlock()
		return openAt{}, nil
	}
	var o openAt
	var started bytes.Buffer
	if err := writeFrame(&started, events.NewRunStartedEvent(sg.thread, sg.run)); err != nil {
		fl.mu.Unlock()
		return openAt{}, err
	}
	o.runStarted = started.Bytes()
	// Tool calls open and close within a record, and so do text messages
	// made of complete ones; a text message the model streams can span
	// records (textBefore, textAfter). Only the record of the resume point
	// needs reading.
	var text, tool *frameHead
	if sg.from == 0 && fr.textBefore != "" {
		text = &frameHead{MessageID: fr.textBefore}
	}
	from, to := fl.eventOffset(fr, sg.from), fl.eventOffset(fr, at+1)
	fl.mu.Unlock()
	var buf []byte
	switch {
	case at+1 >= fr.nEv:
		// Cut after the record's last event: only a streamed text message
		// can still be open.
		text = nil
		if fr.textAfter != "" {
			text = &frameHead{MessageID: fr.textAfter}
		}
	case to-from > maxPrefixScan:
		return o, nil
	default:
		buf = make([]byte, to-from)
		if _, err := fl.f.ReadAt(buf, from); err != nil {
			return openAt{}, fmt.Errorf("AG-UI frame cache: %w", err)
		}
	}
	for _, frame := range bytes.Split(buf, []byte("\n\n")) {
		_, data, ok := bytes.Cut(frame, []byte("\ndata: "))
		if !ok {
			continue
		}
		var h frameHead
		if json.Unmarshal(data, &h) != nil {
			continue
		}
		switch h.Type {
		case "TEXT_MESSAGE_START":
			text = &h
		case "TEXT_MESSAGE_END":
			text = nil
		case "TOOL_CALL_START":
			tool = &h
		case "TOOL_CALL_END":
			tool = nil
		}
	}
	var starts bytes.Buffer
	var err error
	if text != nil {
		err = writeFrame(&starts, events.NewTextMessageStartEvent(text.MessageID, events.WithRole(firstNonEmpty(text.Role, "assistant"))))
	}
	if tool != nil && err == nil {
		var opts []events.ToolCallStartOption
		if tool.ParentMessageID != "" {
			opts = append(opts, events.WithParentMessageID(tool.ParentMessageID))
		}
		err = writeFrame(&starts, events.NewToolCallStartEvent(tool.ToolCallID, tool.ToolCallName, opts...))
	}
	o.starts = starts.Bytes()
	return o, err
}

// writeFrame appends ev to b as an SSE frame without an id: one a stream
// starts with to restate what is open, not an event of the log.
func writeFrame(b *bytes.Buffer, ev events.Event) error {
	data, err := ev.ToJSON()
	if err != nil {
		return err
	}
	b.WriteString("data: ")
	b.Write(data)
	b.WriteString("\n\n")
	return nil
}

// maxPrefixScan bounds what resumePrefix reads of a record: a text message
// or tool call start is small, a record that big is a tool's output.
const maxPrefixScan = 1 << 20

// framesDir is where a runner renders its frame file.
func framesDir(workspace string) string { return filepath.Join(workspace, CacheDir) }
