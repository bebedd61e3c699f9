package runner

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ag-ui-protocol/ag-ui/sdks/community/go/pkg/client/sse"
	"github.com/ag-ui-protocol/ag-ui/sdks/community/go/pkg/core/events"
	"github.com/ag-ui-protocol/ag-ui/sdks/community/go/pkg/core/types"
	"github.com/sirupsen/logrus"

	"github.com/tether-dev/tether/test/modelserver"
)

const testToken = "s3cret-token"

func httpScript() []modelserver.Step {
	return []modelserver.Step{
		{Cue: "list the files", Reply: []modelserver.Block{modelserver.Text("looking"), modelserver.Bash("echo LISTED && ls")}},
		{Cue: "LISTED", Reply: []modelserver.Block{modelserver.Text("here they are")}},
		{Cue: "second run", Reply: []modelserver.Block{modelserver.Text("second answer")}},
	}
}

func startHTTP(t *testing.T) (*running, *httptest.Server, string) {
	t.Helper()
	srv := modelserver.Start(t.Logf, httpScript()...)
	t.Cleanup(srv.Close)
	ws := t.TempDir()
	rr := startRunner(t, testConfig(t, srv, ws))
	hs := httptest.NewServer(Handler(rr.r, testToken))
	t.Cleanup(hs.Close)
	rr.ready(t)
	return rr, hs, ws
}

// TestAGUIRunWithSDKClient: the AG-UI SDK's own SSE client posts a run and sees
// a complete, valid event sequence with the tool call.
func TestAGUIRunWithSDKClient(t *testing.T) {
	_, hs, _ := startHTTP(t)
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	c := sse.NewClient(sse.Config{Endpoint: hs.URL + "/agui", APIKey: testToken, Logger: quiet})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	frames, errs, err := c.Stream(sse.StreamOptions{Context: ctx, Payload: types.RunAgentInput{
		ThreadID: "main", RunID: "run-1",
		Messages: []types.Message{{ID: "m1", Role: types.RoleUser, Content: "please list the files"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	dec := events.NewEventDecoder(quiet)
	var evs []events.Event
	var types_ []string
	for f := range frames {
		var head struct{ Type string }
		json.Unmarshal(f.Data, &head)
		ev, err := dec.DecodeEvent(head.Type, f.Data)
		if err != nil {
			t.Fatalf("undecodable event %s: %v", f.Data, err)
		}
		evs = append(evs, ev)
		types_ = append(types_, head.Type)
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	got := strings.Join(types_, " ")
	for _, want := range []string{"RUN_STARTED TEXT_MESSAGE_START TEXT_MESSAGE_CONTENT TEXT_MESSAGE_END CUSTOM", "TOOL_CALL_START TOOL_CALL_ARGS TOOL_CALL_END", "TOOL_CALL_RESULT", "RUN_FINISHED"} {
		if !strings.Contains(got, want) {
			t.Errorf("event types %q lack %q", got, want)
		}
	}
	if !strings.HasPrefix(got, "RUN_STARTED") || !strings.HasSuffix(got, "RUN_FINISHED") {
		t.Errorf("run not framed by RUN_STARTED ... RUN_FINISHED: %s", got)
	}
	if rs := evs[0].(*events.RunStartedEvent); rs.RunID() != "run-1" || rs.ThreadID() != "main" {
		t.Errorf("RUN_STARTED %+v", rs)
	}
	if rf := evs[len(evs)-1].(*events.RunFinishedEvent); rf.RunID() != "run-1" {
		t.Errorf("RUN_FINISHED run id %q", rf.RunID())
	}
	for _, ev := range evs {
		if r, ok := ev.(*events.ToolCallResultEvent); ok && !strings.Contains(r.Content, "LISTED") {
			t.Errorf("tool result %q", r.Content)
		}
	}
	// Custom events are not part of the protocol's sequence rules; check
	// the rest is a valid sequence.
	var core []events.Event
	for _, ev := range evs {
		if ev.Type() != events.EventTypeCustom {
			core = append(core, ev)
		}
	}
	if err := events.ValidateSequence(core); err != nil {
		t.Errorf("invalid AG-UI sequence: %v", err)
	}
}

type sseEvent struct{ id, data string }

// readSSE reads events from an SSE response until n events were read (n < 0:
// until EOF) or stop says so.
func readSSE(t *testing.T, body io.Reader, stop func(sseEvent) bool) []sseEvent {
	t.Helper()
	var out []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(body)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			cur.id = line[4:]
		case strings.HasPrefix(line, "data: "):
			cur.data = line[6:]
		case line == "":
			if cur.data != "" {
				out = append(out, cur)
				if stop(cur) {
					return out
				}
			}
			cur = sseEvent{}
		}
	}
	return out
}

func getEvents(t *testing.T, ctx context.Context, url, lastID string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/agui/events", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /agui/events: %s %s", resp.Status, b)
	}
	return resp
}

// TestAGUIReconnect: a client following /agui/events that drops in the middle
// of a run and reconnects with Last-Event-ID gets exactly the events it
// missed, no more, no less.
func TestAGUIReconnect(t *testing.T) {
	rr, hs, _ := startHTTP(t)
	if _, err := rr.r.Send(context.Background(), "please list the files", ""); err != nil {
		t.Fatal(err)
	}
	// The full log, as a reference: read until the first run finishes.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The end of a turn's run, not of the runner's own short runs.
	finished := func(e sseEvent) bool {
		return strings.Contains(e.data, `"RUN_FINISHED"`) && !strings.Contains(e.data, `"runId":"tether-`)
	}
	resp := getEvents(t, ctx, hs.URL, "")
	all := readSSE(t, resp.Body, finished)
	resp.Body.Close()
	if len(all) < 8 {
		t.Fatalf("only %d events in the first run", len(all))
	}
	for cut := 1; cut < len(all); cut += 3 {
		resp := getEvents(t, ctx, hs.URL, all[cut-1].id)
		rest := readSSE(t, resp.Body, finished)
		resp.Body.Close()
		// Inside a run, the stream opens with its start again, without an
		// id: not an event the client missed.
		if cut < len(all) && len(rest) > 0 && rest[0].id == "" {
			if !strings.Contains(rest[0].data, `"RUN_STARTED"`) {
				t.Fatalf("after %s: the stream opens with %s", all[cut-1].id, rest[0].data)
			}
			for len(rest) > 0 && rest[0].id == "" {
				rest = rest[1:]
			}
		}
		if len(rest) != len(all)-cut {
			t.Fatalf("after %s: got %d events, want %d", all[cut-1].id, len(rest), len(all)-cut)
		}
		for i := range rest {
			if rest[i] != all[cut+i] {
				t.Fatalf("after %s: event %d = %+v, want %+v", all[cut-1].id, i, rest[i], all[cut+i])
			}
		}
	}
	// A live follower sees the next run as it happens.
	resp = getEvents(t, ctx, hs.URL, all[len(all)-1].id)
	defer resp.Body.Close()
	go func() {
		time.Sleep(200 * time.Millisecond)
		rr.r.Send(context.Background(), "the second run", "")
	}()
	live := readSSE(t, resp.Body, finished)
	if !strings.Contains(live[0].data, "RUN_STARTED") || !strings.Contains(live[len(live)-1].data, "second") && !strings.Contains(live[len(live)-1].data, "RUN_FINISHED") {
		t.Errorf("live events: %+v", live)
	}
	var text bytes.Buffer
	for _, e := range live {
		text.WriteString(e.data)
	}
	if !strings.Contains(text.String(), "second answer") {
		t.Errorf("live follower missed the second answer: %s", text.String())
	}
}

func TestHTTPAuthAndProbes(t *testing.T) {
	rr, hs, _ := startHTTP(t)
	for _, tc := range []struct {
		method, path, auth string
		want               int
	}{
		{"GET", "/healthz", "", 200},
		{"GET", "/readyz", "", 200},
		{"GET", "/metrics", "", 401},
		{"GET", "/metrics", "Bearer " + testToken, 200},
		{"GET", "/metrics", "Bearer " + testToken + "x", 401},
		{"GET", "/agui/events", "", 401},
		{"POST", "/agui/events", "", 401},
		{"GET", "/status", "", 401},
		{"GET", "/status", "Bearer wrong", 401},
		{"GET", "/status", "Bearer " + testToken, 200},
		{"POST", "/agui", "", 401},
		{"POST", "/agui", "Bearer " + testToken, 400}, // empty body
		{"GET", "/agui/events?after=x", "Bearer " + testToken, 400},
	} {
		req, _ := http.NewRequest(tc.method, hs.URL+tc.path, nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s (%q) = %d, want %d", tc.method, tc.path, tc.auth, resp.StatusCode, tc.want)
		}
	}
	// tether send's client, end to end.
	var out bytes.Buffer
	if err := SendMessage(context.Background(), hs.URL, testToken, "main", "please list the files", &out); err != nil {
		t.Fatalf("SendMessage: %v\n%s", err, out.String())
	}
	for _, want := range []string{"── run", "looking", "→ Bash", "← LISTED", "here they are", "── run finished"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("send output lacks %q:\n%s", want, out.String())
		}
	}
	req, _ := http.NewRequest("GET", hs.URL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range strings.Split(string(m), "\n") {
		if strings.HasPrefix(line, "tether_runner_session_id_durable_seconds_sum") || strings.HasPrefix(line, "tether_runner_time_to_first_byte_seconds_sum") || strings.HasPrefix(line, "tether_runner_event_overhead_seconds_sum") || strings.HasPrefix(line, "tether_runner_cli_events_total") {
			t.Logf("measured with the real CLI: %s", line)
		}
	}
	for _, want := range []string{`tether_runner_turns_total{result="success"} 1`, `tether_runner_resume_total{outcome="none"} 1`, "tether_runner_session_id_durable_seconds_count 1", "tether_runner_time_to_first_byte_seconds_count 1", "tether_runner_ready 1"} {
		if !strings.Contains(string(m), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	_ = rr
}
