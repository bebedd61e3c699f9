package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/ag-ui-protocol/ag-ui/sdks/community/go/pkg/client/sse"
	"github.com/ag-ui-protocol/ag-ui/sdks/community/go/pkg/core/events"
	"github.com/ag-ui-protocol/ag-ui/sdks/community/go/pkg/core/types"
	"github.com/sirupsen/logrus"
)

// SendMessage posts text as a new run to a runner's POST /agui (baseURL is
// e.g. http://127.0.0.1:8080), prints the run's events to out as they stream
// and returns when the run ends: nil for RUN_FINISHED, an error for RUN_ERROR
// or a stream that ends without either. An error starting "send to " means
// the runner did not take the message (nothing listening, not ready).
func SendMessage(ctx context.Context, baseURL, token, thread, text string, out io.Writer) error {
	return SendRun(ctx, baseURL, token, thread, NewRunID(), text, out)
}

// NewRunID returns a fresh AG-UI run id.
func NewRunID() string { return "run-" + randomHex(8) }

// SendRun is SendMessage with the caller's run id. The runner takes a run id
// once: posting the same id again (a retry after a lost answer) does not send
// the message to the agent twice but streams that run's events again. Retry
// with the same id to get exactly-once delivery.
func SendRun(ctx context.Context, baseURL, token, thread, runID, text string, out io.Writer) error {
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	c := sse.NewClient(sse.Config{Endpoint: strings.TrimRight(baseURL, "/") + "/agui", APIKey: token, Logger: quiet, ReadTimeout: -1})
	defer c.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	frames, errs, err := c.Stream(sse.StreamOptions{Context: ctx, Payload: types.RunAgentInput{
		ThreadID: thread, RunID: runID,
		Messages: []types.Message{{ID: "msg-" + randomHex(6), Role: types.RoleUser, Content: text}},
	}})
	if err != nil {
		return fmt.Errorf("send to %s: %w", baseURL, err)
	}
	dec := events.NewEventDecoder(quiet)
	p := &printer{w: out}
	for f := range frames {
		var head struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(f.Data, &head) != nil {
			continue
		}
		ev, err := dec.DecodeEvent(head.Type, f.Data)
		if err != nil {
			continue
		}
		if done, err := p.print(ev); done {
			return err
		}
	}
	if err := <-errs; err != nil {
		return fmt.Errorf("stream from %s: %w", baseURL, err)
	}
	return fmt.Errorf("the stream from %s ended before the run finished", baseURL)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// printer renders AG-UI events for a terminal.
type printer struct {
	w      io.Writer
	inText bool
	// user holds the ids of user messages: the run opens with the message
	// sent, which the terminal already shows.
	user map[string]bool
}

func (p *printer) print(ev events.Event) (done bool, err error) {
	switch e := ev.(type) {
	case *events.RunStartedEvent:
		fmt.Fprintf(p.w, "── run %s started\n", e.RunID())
	case *events.TextMessageStartEvent:
		if e.Role != nil && *e.Role == "user" {
			if p.user == nil {
				p.user = map[string]bool{}
			}
			p.user[e.MessageID] = true
		}
	case *events.TextMessageContentEvent:
		if p.user[e.MessageID] {
			return false, nil
		}
		fmt.Fprint(p.w, e.Delta)
		p.inText = true
	case *events.TextMessageEndEvent:
		if p.inText && !p.user[e.MessageID] {
			fmt.Fprintln(p.w)
			p.inText = false
		}
	case *events.ToolCallStartEvent:
		fmt.Fprintf(p.w, "→ %s ", e.ToolCallName)
	case *events.ToolCallArgsEvent:
		fmt.Fprint(p.w, e.Delta)
	case *events.ToolCallEndEvent:
		fmt.Fprintln(p.w)
	case *events.ToolCallResultEvent:
		c := e.Content
		if len(c) > 400 {
			c = c[:400] + " [...]"
		}
		fmt.Fprintf(p.w, "← %s\n", strings.ReplaceAll(strings.TrimSpace(c), "\n", "\n  "))
	case *events.CustomEvent:
		v, _ := json.Marshal(e.Value)
		fmt.Fprintf(p.w, "[%s] %s\n", e.Name, v)
	case *events.RunFinishedEvent:
		fmt.Fprintln(p.w, "── run finished")
		return true, nil
	case *events.RunErrorEvent:
		fmt.Fprintf(p.w, "── run failed: %s\n", e.Message)
		return true, fmt.Errorf("run failed: %s", e.Message)
	}
	return false, nil
}
