package runner

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestEventLogAppendReadReopen(t *testing.T) {
	p := filepath.Join(t.TempDir(), "events.jsonl")
	l, recs, err := OpenEventLog(p)
	if err != nil || len(recs) != 0 {
		t.Fatalf("open: %v %v", recs, err)
	}
	for i := 1; i <= 5; i++ {
		rec, err := l.Append(int64(i), KindInput, SourceUser, mustJSON(inputData{Text: strings.Repeat("x", i)}), i%2 == 0)
		if err != nil || rec.Seq != int64(i) {
			t.Fatalf("append %d: %+v %v", i, rec, err)
		}
	}
	got, err := l.ReadAfter(2, 2)
	if err != nil || len(got) != 2 || got[0].Seq != 3 || got[1].Seq != 4 {
		t.Fatalf("ReadAfter(2, 2) = %+v, %v", got, err)
	}
	if n, _ := l.Last(); n != 5 {
		t.Errorf("Last = %d", n)
	}
	l.Close()
	// A closed log can still be replayed.
	if got, err := l.ReadAfter(4, 0); err != nil || len(got) != 1 || got[0].Seq != 5 {
		t.Errorf("ReadAfter on a closed log: %+v %v", got, err)
	}
	// A torn append (power loss) is cut, kept aside, and numbering goes on.
	f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"seq":6,"kind":"cli","da`)
	f.Close()
	l2, recs, err := OpenEventLog(p)
	if err != nil || len(recs) != 5 {
		t.Fatalf("reopen after a torn append: %d records, %v", len(recs), err)
	}
	if rec, _ := l2.Append(6, KindCLI, "result", json.RawMessage(`{}`), true); rec.Seq != 6 {
		t.Errorf("seq after reopen = %d", rec.Seq)
	}
	l2.Close()
	if m, _ := filepath.Glob(p + ".cut-*"); len(m) != 1 {
		t.Errorf("torn bytes not kept aside: %v", m)
	}
}

func TestEventLogDamaged(t *testing.T) {
	ws := t.TempDir()
	p := filepath.Join(ws, EventLogFile)
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte("{\"seq\":1,\"kind\":\"input\"}\nGARBAGE\n{\"seq\":3}\n"), 0o644)
	if _, _, err := OpenEventLog(p); !errors.Is(err, ErrDamagedLog) {
		t.Fatalf("err = %v, want ErrDamagedLog", err)
	}
	r, err := New(Config{Workspace: ws, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Open(); err != nil {
		t.Fatalf("a damaged log must not stop the runner: %v", err)
	}
	defer r.events.Close()
	if m, _ := filepath.Glob(p + ".damaged-*"); len(m) != 1 {
		t.Errorf("damaged log not kept aside: %v", m)
	}
}

// TestEncodeRecord: the event log's own encoder writes what json.Marshal
// would, so readers decode the same record.
func TestEncodeRecord(t *testing.T) {
	at := time.Date(2026, 12, 3, 8, 0, 0, 123456789, time.UTC)
	for _, rec := range []Record{
		{Seq: 1, Time: at, Kind: KindRunner, Type: "resume", Data: json.RawMessage(`{"outcome":"none"}`)},
		{Seq: 2, Time: at, Turn: 3, Run: `run-"x"`, Kind: KindCLI, Type: "user", Data: json.RawMessage(`{"a":[1,2,{"b":"c d"}]}`)},
		{Seq: 3, Time: at, Kind: KindInput, Type: SourceUser, Data: json.RawMessage("{\n  \"text\": \"pretty\"\n}")},
		{Seq: 4, Time: at, Kind: KindCLI, Type: "invalid", Data: json.RawMessage(`"not json at all"`)},
	} {
		want, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		got, err := encodeRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want)+"\n" {
			t.Errorf("encodeRecord:\n%s\njson.Marshal:\n%s", got, want)
		}
	}
	if _, err := encodeRecord(Record{Data: json.RawMessage(`{"broken":`)}); err == nil {
		t.Error("no error for Data that is not JSON")
	}
}
