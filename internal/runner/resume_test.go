package runner

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/agent"
	"github.com/tether-dev/tether/test/modelserver"
)

func conversationScript() []modelserver.Step {
	return []modelserver.Step{
		{Cue: "the first question", Reply: []modelserver.Block{modelserver.Text("the first answer")}},
		{Cue: "the second question", Reply: []modelserver.Block{modelserver.Text("the second answer")}},
		{Cue: "could not be resumed", Reply: []modelserver.Block{modelserver.Text("recap received")}},
	}
}

// firstLife runs one turn with the initial prompt and stops cleanly; it
// returns the session id.
func firstLife(t *testing.T, srv *modelserver.Server, ws string) string {
	t.Helper()
	cfg := testConfig(t, srv, ws)
	cfg.InitialPrompt = "the first question"
	rr := startRunner(t, cfg)
	rr.ready(t)
	waitFor(t, 30*time.Second, "the first result", func() bool { return results(readLog(t, ws)) == 1 })
	if err := rr.stop(t); err != nil {
		t.Fatal(err)
	}
	return storedID(t, ws)
}

func transcriptOf(ws, id string) string {
	return agent.TranscriptPath(filepath.Join(ws, ClaudeDir), ws, id)
}

// TestResumeRepairsTruncatedTranscript cuts the transcript in the middle of its
// last line, as a kill during an append does: the runner repairs it (keeping
// the cut bytes), resumes, and the model still receives the earlier turn.
func TestResumeRepairsTruncatedTranscript(t *testing.T) {
	srv := modelserver.Start(t.Logf, conversationScript()...)
	t.Cleanup(srv.Close)
	ws := t.TempDir()
	id := firstLife(t, srv, ws)

	tp := transcriptOf(ws, id)
	data, err := os.ReadFile(tp)
	if err != nil {
		t.Fatal(err)
	}
	lastStart := strings.LastIndexByte(strings.TrimSuffix(string(data), "\n"), '\n') + 1
	cutAt := lastStart + (len(data)-lastStart)/2
	if err := os.WriteFile(tp, data[:cutAt], 0o600); err != nil {
		t.Fatal(err)
	}
	torn := string(data[lastStart:cutAt])

	before := len(srv.AgentRequests())
	cfg := testConfig(t, srv, ws)
	cfg.InitialPrompt = "the first question"
	rr := startRunner(t, cfg)
	rr.ready(t)
	st := readStatus(t, ws)
	if st.Resume.Outcome != ResumeResumed || st.Resume.SessionID != id || !st.Resume.Repaired {
		t.Fatalf("resume status %+v, want resumed %s after a repair", st.Resume, id)
	}
	if b, err := os.ReadFile(st.Resume.CutSavedTo); err != nil || string(b) != torn {
		t.Errorf("cut bytes kept in %s = %q (%v), want %q", st.Resume.CutSavedTo, b, err, torn)
	}
	if b, _ := os.ReadFile(tp); string(b) != string(data[:lastStart]) {
		t.Errorf("repaired transcript is not the original up to its last complete line")
	}
	if _, err := rr.r.Send(context.Background(), "the second question", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the second result", func() bool { return results(readLog(t, ws)) == 2 })
	reqs := srv.AgentRequests()[before:]
	h := reqs[len(reqs)-1].History()
	for _, want := range []string{"the first question", "the second question"} {
		if !strings.Contains(h, want) {
			t.Errorf("history after resume lacks %q:\n%s", want, h)
		}
	}
	if strings.Count(h, "the first question") != 1 {
		t.Errorf("initial prompt sent again:\n%s", h)
	}
	if ids := initIDs(readLog(t, ws)); ids[len(ids)-1] != id {
		t.Errorf("CLI continued under %s, want %s", ids[len(ids)-1], id)
	}
}

// TestResumeFailsWhenTranscriptDeleted: the outcome `failed` is reported in
// the log, the event log and the status file, and a fresh session starts,
// seeded with a recap the model receives.
func TestResumeFailsWhenTranscriptDeleted(t *testing.T) {
	srv := modelserver.Start(t.Logf, conversationScript()...)
	t.Cleanup(srv.Close)
	ws := t.TempDir()
	id := firstLife(t, srv, ws)
	if err := os.Remove(transcriptOf(ws, id)); err != nil {
		t.Fatal(err)
	}
	before := len(srv.AgentRequests())
	cfg := testConfig(t, srv, ws)
	cfg.InitialPrompt = "the first question"
	lw := &logWriter{t: t}
	cfg.Logger = loggerTo(lw)
	rr := startRunner(t, cfg)
	rr.ready(t)
	waitFor(t, 30*time.Second, "the recap's result", func() bool { return results(readLog(t, ws)) == 2 })

	// Channel 1: the status file.
	st := readStatus(t, ws)
	if st.Resume.Outcome != ResumeFailed || st.Resume.PreviousID != id || !strings.Contains(st.Resume.Reason, "missing") {
		t.Errorf("status resume %+v, want failed for %s", st.Resume, id)
	}
	// Channel 2: the event log (AG-UI clients get it as a CUSTOM event).
	recs := readLog(t, ws)
	if rs := findRunner(recs, "resume"); len(rs) != 1 || !strings.Contains(string(rs[0].Data), `"outcome":"failed"`) {
		t.Errorf("resume records %v", rs)
	}
	// ... which an AG-UI client replaying the log sees as a CUSTOM event.
	hs := httptest.NewServer(Handler(rr.r, ""))
	defer hs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", hs.URL+"/agui/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	evs := readSSE(t, resp.Body, func(e sseEvent) bool { return strings.Contains(e.data, CustomResume) })
	resp.Body.Close()
	if last := evs[len(evs)-1].data; !strings.Contains(last, `"type":"CUSTOM"`) || !strings.Contains(last, `"outcome":"failed"`) {
		t.Errorf("AG-UI resume event: %s", last)
	}
	// Channel 3: the log.
	if !strings.Contains(lw.String(), "RESUME FAILED") || !strings.Contains(lw.String(), id) {
		t.Errorf("no loud log line about the failed resume")
	}
	// A fresh session, persisted.
	newID := storedID(t, ws)
	if newID == id || newID == "" || st.SessionID != newID {
		t.Errorf("fresh session id %q (status %q), old %q", newID, st.SessionID, id)
	}
	// The model receives the recap with the earlier conversation.
	reqs := srv.AgentRequests()[before:]
	h := reqs[0].History()
	for _, want := range []string{"could not be resumed", id, "User: the first question", "Assistant: the first answer"} {
		if !strings.Contains(h, want) {
			t.Errorf("recap lacks %q:\n%s", want, h)
		}
	}
}

// TestResumeRefusedByCLI: the transcript file exists but holds no
// conversation; the CLI says "No conversation found" and the runner reports
// failed from that answer.
func TestResumeRefusedByCLI(t *testing.T) {
	srv := modelserver.Start(t.Logf, conversationScript()...)
	t.Cleanup(srv.Close)
	ws := t.TempDir()
	const bogus = "3a0c1b7e-0000-4000-8000-000000000001"
	if _, err := agent.OpenSessionIDs(ws).Set("main", bogus); err != nil {
		t.Fatal(err)
	}
	tp := transcriptOf(ws, bogus)
	os.MkdirAll(filepath.Dir(tp), 0o755)
	if err := os.WriteFile(tp, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	rr := startRunner(t, testConfig(t, srv, ws))
	rr.ready(t)
	st := readStatus(t, ws)
	if st.Resume.Outcome != ResumeFailed || !strings.Contains(st.Resume.Reason, "No conversation found") {
		t.Fatalf("resume %+v, want failed with the CLI's words", st.Resume)
	}
	waitFor(t, 30*time.Second, "the recap's result", func() bool { return results(readLog(t, ws)) == 1 })
	if id := storedID(t, ws); id == bogus {
		t.Error("the fresh session's id was not recorded")
	}
}

// TestResumeThroughSymlink: the workspace is reached through a symlink (as a
// volume mount can be). The CLI files transcripts under the real path; the
// runner must look there, or it would call every resume failed.
func TestResumeThroughSymlink(t *testing.T) {
	srv := modelserver.Start(t.Logf, conversationScript()...)
	t.Cleanup(srv.Close)
	real := t.TempDir()
	ws := filepath.Join(t.TempDir(), "ws-link")
	if err := os.Symlink(real, ws); err != nil {
		t.Fatal(err)
	}
	id := firstLife(t, srv, ws)
	rr := startRunner(t, testConfig(t, srv, ws))
	rr.ready(t)
	if st := readStatus(t, ws); st.Resume.Outcome != ResumeResumed || st.Resume.SessionID != id {
		t.Fatalf("resume through a symlinked workspace: %+v", st.Resume)
	}
}
