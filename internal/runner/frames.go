package runner

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
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
	f      *os.File
	done   <-chan struct{} // closed when no record will be appended any more

	mu      sync.Mutex
	recs    []frameRec // recs[i] is record Seq i+1
	evStart []int64    // where each event starts, all records' events in order
	size    int64
	notify  chan struct{} // closed and replaced whenever recs grows or the log ends
	ended   bool          // every record there will ever be is rendered
	err     error         // rendering stopped on this error
}

// frameRec is what streams need of one record without reading it again.
type frameRec struct {
	off, end int64 // its frames' bytes
	firstEv  int   // index in evStart of its first event
	nEv      int
	turn     int64
	endsRun  bool
}

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
	fl := &frameLog{src: src, thread: thread, f: f, done: done, notify: make(chan struct{})}
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
	fr := frameRec{off: fl.size, turn: rec.Turn, endsRun: endsRun(rec)}
	evs := Translate(rec, fl.thread)
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
		n, _ := fmt.Fprintf(w, "id: %s\nevent: %s\ndata: ", ev.ID, ev.Event.Type())
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
// contiguous bytes made of the records from seq on that filter lets
// through, starting skip events into record seq. Records filter refuses
// are passed over.
func (fl *frameLog) next(ctx context.Context, seq int64, skip int, filter func(frameRec) (send, last bool)) (span, error) {
	for {
		fl.mu.Lock()
		n, notify, ended, err := int64(len(fl.recs)), fl.notify, fl.ended, fl.err
		if seq <= n {
			sp := span{off: -1, next: seq}
			for ; sp.next <= n; sp.next++ {
				fr := fl.recs[sp.next-1]
				send, last := filter(fr)
				if send {
					from := fr.off
					if sp.next == seq && skip > 0 {
						from = fr.end
						if skip < fr.nEv {
							from = fl.evStart[fr.firstEv+skip]
						}
					}
					if sp.off >= 0 && from != sp.end {
						break
					}
					if sp.off < 0 {
						sp.off = from
					}
					sp.end = fr.end
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

// framesDir is where a runner renders its frame file.
func framesDir(workspace string) string { return filepath.Join(workspace, CacheDir) }
