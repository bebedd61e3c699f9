package runner

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"
)

func benchRunner(b *testing.B) *Runner {
	b.Helper()
	r, err := New(Config{Workspace: b.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Open(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.events.Close() })
	r.turn, r.turnOpen, r.turnRunID = 1, true, "turn-1"
	return r
}

// BenchmarkEventOverhead is the runner's cost per CLI event: parse the line,
// append it to the event log, translate it to AG-UI events for a client.
func BenchmarkEventOverhead(b *testing.B) {
	r := benchRunner(b)
	line := []byte(`{"type":"assistant","message":{"content":[{"id":"toolu_0002_1","input":{"command":"go test ./...","description":"run the tests"},"name":"Bash","type":"tool_use"}],"id":"msg_0002","role":"assistant"},"parent_tool_use_id":null,"session_id":"0f4bd87c-9f6d-4c65-a372-d2dc19190827","uuid":"e6729e01-d8c1-4c45-ab0e-106a5d799122"}` + "\n")
	b.SetBytes(int64(len(line)))
	tr := NewTranslator("main")
	tr.Record(Record{Seq: 1, Kind: KindInput, Type: SourceUser, Data: json.RawMessage(`{"text":"go"}`)}) // the turn the lines are in
	for b.Loop() {
		if err := r.handleLine(cliLine{b: line, at: time.Now()}); err != nil {
			b.Fatal(err)
		}
		n, _ := r.events.Last()
		recs, _ := r.events.ReadAfter(n-1, 1)
		if len(tr.Record(recs[0])) != 3 {
			b.Fatal("bad translation")
		}
	}
}

// BenchmarkInitToDurable is the time from reading an init line with a new
// session id to the id fsynced in session-ids.json, the snapshot request
// written and the init record fsynced in the event log.
func BenchmarkInitToDurable(b *testing.B) {
	r := benchRunner(b)
	i := 0
	for b.Loop() {
		i++
		line := []byte(fmt.Sprintf(`{"type":"system","subtype":"init","session_id":"00000000-0000-4000-8000-%012d","cwd":"/w"}`+"\n", i))
		if err := r.handleLine(cliLine{b: line, at: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
}
