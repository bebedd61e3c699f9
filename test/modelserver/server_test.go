package modelserver_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/tether-dev/tether/test/modelserver"
)

// TestStreamShape checks the SSE event order the Messages API promises, without
// the CLI, so a broken server is told apart from a CLI change.
func TestStreamShape(t *testing.T) {
	srv := modelserver.Start(t.Logf, modelserver.Step{Cue: "go", Reply: []modelserver.Block{
		modelserver.Text("hi"), modelserver.Bash("true")}})
	defer srv.Close()
	body := `{"model":"m","stream":true,"tools":[{"name":"Bash"}],"messages":[{"role":"user","content":[{"type":"text","text":"please go"}]},{"role":"system","content":"reminder"}]}`
	resp, err := http.Post(srv.URL()+"/v1/messages", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var events []string
	var stop string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if e, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			events = append(events, e)
		}
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok && strings.Contains(d, "message_delta") {
			var m struct {
				Delta struct {
					StopReason string `json:"stop_reason"`
				}
			}
			json.Unmarshal([]byte(d), &m)
			stop = m.Delta.StopReason
		}
	}
	want := "message_start content_block_start content_block_delta content_block_stop content_block_start content_block_delta content_block_stop message_delta message_stop"
	if got := strings.Join(events, " "); got != want {
		t.Errorf("events:\n got %s\nwant %s", got, want)
	}
	if stop != "tool_use" {
		t.Errorf("stop_reason = %q, want tool_use", stop)
	}
	reqs := srv.Requests()
	if len(reqs) != 1 || reqs[0].Reply != "go" || !bytes.Equal(reqs[0].Body, []byte(body)) {
		t.Errorf("recorded %+v", reqs)
	}
	// A request without tools is a side request: never scripted.
	resp, err = http.Post(srv.URL()+"/v1/messages", "application/json", strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"go"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var msg struct {
		Content []struct{ Text string }
	}
	json.NewDecoder(resp.Body).Decode(&msg)
	resp.Body.Close()
	if len(msg.Content) != 1 || msg.Content[0].Text != modelserver.DefaultReply {
		t.Errorf("side request answered with %+v", msg)
	}
}
