package runner

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/agent"
	"github.com/tether-dev/tether/test/modelserver"
)

// TestRunnerTurns runs an initial prompt and a client message with a real tool
// call through the real CLI, then stops cleanly.
func TestRunnerTurns(t *testing.T) {
	srv := modelserver.Start(t.Logf,
		modelserver.Step{Cue: "initial task", Reply: []modelserver.Block{modelserver.Text("starting the task")}},
		modelserver.Step{Cue: "write the file", Reply: []modelserver.Block{modelserver.Write("out.txt", "written by the agent\n")}},
		modelserver.Step{Cue: "out.txt", Reply: []modelserver.Block{modelserver.Text("file written")}},
	)
	t.Cleanup(srv.Close)
	ws := t.TempDir()
	cfg := testConfig(t, srv, ws)
	cfg.InitialPrompt = "the initial task"
	rr := startRunner(t, cfg)
	rr.ready(t)
	waitFor(t, 30*time.Second, "the initial prompt's result", func() bool { return results(readLog(t, ws)) == 1 })

	rec, err := rr.r.Send(context.Background(), "now write the file", "")
	if err != nil || rec.Turn != 2 {
		t.Fatalf("Send = %+v, %v", rec, err)
	}
	waitFor(t, 30*time.Second, "the second result", func() bool { return results(readLog(t, ws)) == 2 })
	if b, err := os.ReadFile(filepath.Join(ws, "out.txt")); err != nil || string(b) != "written by the agent\n" {
		t.Errorf("the Write tool did not run: %q %v", b, err)
	}
	recs := readLog(t, ws)
	ids := initIDs(recs)
	if len(ids) != 2 || ids[0] != ids[1] {
		t.Fatalf("init ids %v", ids)
	}
	if got := storedID(t, ws); got != ids[0] {
		t.Errorf("session-ids.json holds %q, init said %q", got, ids[0])
	}
	if _, err := os.Stat(agent.TranscriptPath(filepath.Join(ws, ".claude"), ws, ids[0])); err != nil {
		t.Errorf("transcript: %v", err)
	}
	var marker struct {
		SessionID string `json:"session_id"`
	}
	if b, err := os.ReadFile(filepath.Join(ws, InitialPromptMarker)); err != nil || json.Unmarshal(b, &marker) != nil || marker.SessionID != ids[0] {
		t.Errorf("initial prompt marker: %s %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(ws, SnapshotRequestFile)); err != nil || !strings.Contains(string(b), ids[0]) {
		t.Errorf("snapshot request: %s %v", b, err)
	}
	var settings map[string]any
	if b, err := os.ReadFile(filepath.Join(ws, ".claude", "settings.json")); err != nil || json.Unmarshal(b, &settings) != nil || settings["cleanupPeriodDays"] != float64(36500) {
		t.Errorf("CLI settings: %s %v", b, err)
	}
	// The status file follows the log record of the result.
	waitFor(t, 5*time.Second, "status to show the turn closed", func() bool { return !readStatus(t, ws).TurnOpen })
	st := readStatus(t, ws)
	if st.State != StateReady || st.SessionID != ids[0] || st.Turns != 2 || st.TurnOpen || st.Resume.Outcome != ResumeNone {
		t.Errorf("status %+v", st)
	}
	// The init record comes right after the input record of its turn:
	// nothing of the turn is recorded before the id is on disk.
	for i, rec := range recs {
		if rec.Kind == KindInput && i+1 < len(recs) {
			if n := recs[i+1]; n.Kind != KindCLI || n.Type != agent.TypeSystem {
				t.Errorf("record after input %d is %s/%s, want the init line", rec.Seq, n.Kind, n.Type)
			}
		}
	}
	if err := rr.stop(t); err != nil {
		t.Fatalf("clean stop: %v", err)
	}
	if st := readStatus(t, ws); st.State != StateStopped {
		t.Errorf("after stop: %+v", st)
	}
	if len(findRunner(readLog(t, ws), "stopped")) != 1 {
		t.Error("no stopped record")
	}
}
