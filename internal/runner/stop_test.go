package runner

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/test/modelserver"
)

func toolScript(cmd string) []modelserver.Step {
	return []modelserver.Step{
		{Cue: "run the tool", Reply: []modelserver.Block{modelserver.Bash(cmd)}},
		{Cue: "TOOL-DONE", Reply: []modelserver.Block{modelserver.Text("finished")}},
	}
}

// TestStopFinishesTurn: SIGTERM (ctx) during a turn closes the CLI's input;
// the CLI finishes the turn, its events are logged, and Run returns nil.
func TestStopFinishesTurn(t *testing.T) {
	srv := modelserver.Start(t.Logf, toolScript("echo start && sleep 1 && echo TOOL-DONE")...)
	t.Cleanup(srv.Close)
	ws := t.TempDir()
	rr := startRunner(t, testConfig(t, srv, ws))
	rr.ready(t)
	if _, err := rr.r.Send(context.Background(), "run the tool", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the tool call", func() bool { return toolRunning(t, ws) })
	start := time.Now()
	if err := rr.stop(t); err != nil {
		t.Fatalf("stop: %v", err)
	}
	t.Logf("stopped %v after SIGTERM", time.Since(start))
	recs := readLog(t, ws)
	if results(recs) != 1 {
		t.Errorf("the turn in flight did not finish before the exit")
	}
	if _, err := rr.r.Send(context.Background(), "too late", ""); err == nil {
		t.Error("Send accepted a message after stop")
	}
	st := readStatus(t, ws)
	if st.State != StateStopped || st.TurnOpen {
		t.Errorf("status %+v", st)
	}
}

// TestStopBudget: a turn that outlasts the stop budget is killed; the log
// says the turn was open, so AG-UI clients get a RUN_ERROR for it.
func TestStopBudget(t *testing.T) {
	srv := modelserver.Start(t.Logf, toolScript("echo start && sleep 30 && echo TOOL-DONE")...)
	t.Cleanup(srv.Close)
	ws := t.TempDir()
	cfg := testConfig(t, srv, ws)
	cfg.StopTimeout = time.Second
	rr := startRunner(t, cfg)
	rr.ready(t)
	in, err := rr.r.Send(context.Background(), "run the tool", "run-x")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the tool call", func() bool { return toolRunning(t, ws) })
	start := time.Now()
	if err := rr.stop(t); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("stop took %v with a 1s budget", d)
	}
	stops := findRunner(readLog(t, ws), "stopped")
	if len(stops) != 1 || !strings.Contains(string(stops[0].Data), `"turn_open":true`) {
		t.Fatalf("stopped records %v", stops)
	}
	// In the AG-UI stream, run-x ends with the stop: one RUN_ERROR, code
	// "stopped", after the CUSTOM event.
	var runX []Event
	tr := NewTranslator("main")
	for _, rec := range readLog(t, ws) {
		for _, e := range tr.Record(rec) {
			if e.Run == "run-x" {
				runX = append(runX, e)
			}
		}
	}
	if err := checkProtocol(runX); err != nil {
		t.Errorf("run-x's events: %v", err)
	}
	if n := len(runX); n < 2 || runX[n-1].Event.Type() != "RUN_ERROR" || runX[n-2].Event.Type() != "CUSTOM" ||
		!strings.Contains(mustEventJSON(t, runX[n-1]), `"code":"stopped"`) {
		t.Fatalf("run-x of the stopped turn does not end with CUSTOM then RUN_ERROR stopped: %v (input %d)", typesOf(runX), in.Turn)
	}
}

func mustEventJSON(t *testing.T, e Event) string {
	b, err := e.Event.ToJSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
