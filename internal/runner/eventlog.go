package runner

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/tether-dev/tether/internal/agent"
)

// Record kinds in the event log.
const (
	// KindCLI is a line the CLI printed; Type is its stream-json type
	// ("invalid" for a line that is not JSON) and Data the line itself.
	KindCLI = "cli"
	// KindInput is a user message the runner sent to the CLI; Type is its
	// source (SourceUser, SourceInitial, ...) and Data {"text": ...}.
	KindInput = "input"
	// KindRunner is something the runner itself reports: Type is one of the
	// Runner* event names and Data an object.
	KindRunner = "runner"
)

// Record is one entry of the durable event log.
type Record struct {
	Seq  int64     `json:"seq"`
	Time time.Time `json:"time"`
	Turn int64     `json:"turn,omitempty"`
	// Run is the AG-UI run id of the turn the record belongs to.
	Run  string          `json:"run,omitempty"`
	Kind string          `json:"kind"`
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

// EventLog is the runner's append-only JSONL log of everything that happened
// in the session: inputs, every CLI line, and the runner's own reports. It is
// what AG-UI clients replay from (by Seq), and what a recap is built from when
// the CLI's own transcript is lost.
//
// Each record is one write(2) on a file opened O_APPEND, so a killed process
// leaves whole records (the page cache survives the process); records marked
// durable are also fsynced, against power loss. A torn last line (power loss)
// is repaired on open with agent.RepairTranscript, its bytes kept aside.
type EventLog struct {
	path string

	mu      sync.Mutex
	f       *os.File
	offsets []int64 // offsets[i] is where record Seq i+1 starts
	size    int64
	notify  chan struct{} // closed and replaced at every append
	closed  bool
}

// ErrDamagedLog is wrapped by OpenEventLog when a record before the last line
// is not valid: not a torn append, which is repaired, but damage.
var ErrDamagedLog = errors.New("event log damaged")

// OpenEventLog opens (creating) the log at path and returns the records it
// holds.
func OpenEventLog(path string) (*EventLog, []Record, error) {
	if _, err := agent.RepairTranscript(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("event log: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("event log %s: %w", path, err)
	}
	l := &EventLog{path: path, f: f, notify: make(chan struct{})}
	var recs []Record
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, 1<<62), 1<<20)
	var off int64
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			var rec Record
			if jerr := json.Unmarshal(line, &rec); jerr != nil || rec.Seq != int64(len(recs))+1 {
				f.Close()
				return nil, nil, fmt.Errorf("event log %s: record at byte %d is damaged or out of order (want seq %d): %w", path, off, len(recs)+1, ErrDamagedLog)
			}
			recs = append(recs, rec)
			l.offsets = append(l.offsets, off)
			off += int64(len(line))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("event log %s: %w", path, err)
		}
	}
	l.size = off
	return l, recs, nil
}

// Path is the log's file.
func (l *EventLog) Path() string { return l.path }

// Append adds a record of turn and returns it with its Seq and Time set.
// durable records are fsynced before Append returns.
func (l *EventLog) Append(turn int64, kind, typ string, data json.RawMessage, durable bool) (Record, error) {
	return l.AppendRecord(Record{Turn: turn, Kind: kind, Type: typ, Data: data}, durable)
}

// AppendRecord adds rec, setting its Seq and Time.
func (l *EventLog) AppendRecord(rec Record, durable bool) (Record, error) {
	if len(rec.Data) == 0 {
		rec.Data = json.RawMessage("null")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return Record{}, fmt.Errorf("event log %s is closed", l.path)
	}
	rec.Seq, rec.Time = int64(len(l.offsets))+1, time.Now().UTC()
	line, err := encodeRecord(rec)
	if err != nil {
		return Record{}, fmt.Errorf("event log %s: encode record: %w", l.path, err)
	}
	if _, err := l.f.Write(line); err != nil {
		return Record{}, fmt.Errorf("event log %s: %w", l.path, err)
	}
	if durable {
		if err := l.f.Sync(); err != nil {
			return Record{}, fmt.Errorf("event log %s: fsync: %w", l.path, err)
		}
	}
	l.offsets = append(l.offsets, l.size)
	l.size += int64(len(line))
	close(l.notify)
	l.notify = make(chan struct{})
	return rec, nil
}

// recordHead is Record without Data, field for field (TestEncodeRecord
// compares the two encodings).
type recordHead struct {
	Seq  int64     `json:"seq"`
	Time time.Time `json:"time"`
	Turn int64     `json:"turn,omitempty"`
	Run  string    `json:"run,omitempty"`
	Kind string    `json:"kind"`
	Type string    `json:"type"`
}

// encodeRecord is json.Marshal(rec) plus a newline, built in one buffer of
// the line's size: json.Marshal would hold a few copies of Data, which can be
// a CLI line of many megabytes.
func encodeRecord(rec Record) ([]byte, error) {
	data := rec.Data
	// A line break in Data would split the record; json.Marshal compacts
	// it away (it can only sit between tokens).
	if !json.Valid(data) || bytes.ContainsAny(data, "\r\n") {
		line, err := json.Marshal(rec)
		return append(line, '\n'), err
	}
	head, err := json.Marshal(recordHead{rec.Seq, rec.Time, rec.Turn, rec.Run, rec.Kind, rec.Type})
	if err != nil {
		return nil, err
	}
	head = head[:len(head)-1] // the closing brace
	line := make([]byte, 0, len(head)+len(`,"data":`)+len(data)+2)
	line = append(line, head...)
	line = append(line, `,"data":`...)
	line = append(line, data...)
	return append(line, '}', '\n'), nil
}

// Last returns the Seq of the newest record (0 for an empty log) and a
// channel closed at the next append.
func (l *EventLog) Last() (int64, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return int64(len(l.offsets)), l.notify
}

// ReadAfter returns the records with Seq > after, oldest first, at most max
// of them (max <= 0: all).
func (l *EventLog) ReadAfter(after int64, max int) ([]Record, error) {
	l.mu.Lock()
	n := int64(len(l.offsets))
	if after < 0 {
		after = 0
	}
	if after >= n {
		l.mu.Unlock()
		return nil, nil
	}
	start, end := l.offsets[after], l.size
	if max > 0 && after+int64(max) < n {
		end = l.offsets[after+int64(max)]
	}
	f, closed := l.f, l.closed
	l.mu.Unlock()
	if closed {
		// Readers may still replay a closed log (a client catching up
		// after the runner stopped).
		rf, err := os.Open(l.path)
		if err != nil {
			return nil, fmt.Errorf("event log %s: %w", l.path, err)
		}
		defer rf.Close()
		f = rf
	}
	buf := make([]byte, end-start)
	if _, err := f.ReadAt(buf, start); err != nil {
		return nil, fmt.Errorf("event log %s: %w", l.path, err)
	}
	var recs []Record
	for _, line := range bytes.SplitAfter(buf, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var rec Record
		if err := json.Unmarshal(line, &rec); err != nil {
			return nil, fmt.Errorf("event log %s: %w", l.path, err)
		}
		recs = append(recs, rec)
	}
	return recs, nil
}

// Sync fsyncs the log.
func (l *EventLog) Sync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	return l.f.Sync()
}

// Close fsyncs and closes the log; waiting readers are woken.
func (l *EventLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	close(l.notify)
	l.notify = make(chan struct{})
	err := l.f.Sync()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}
