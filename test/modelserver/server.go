package modelserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Step is one scripted model reply. A request is answered by the first step
// whose Cue occurs in the text of the latest user message (text blocks and
// tool_result contents); matching is stateless, so a CLI that retries or is
// restarted after a kill gets the same answer again.
type Step struct {
	// Cue is a substring of the latest user message. Empty never matches.
	Cue string
	// Reply is the content of the assistant message, streamed in order.
	Reply []Block
	// Delay holds the response back before the first byte, to let a test
	// act while a turn is in flight.
	Delay time.Duration
	// Pause is the time between two text deltas of a streamed reply (a
	// text block streams as several deltas, as the real API sends it).
	Pause time.Duration
}

// Block is one content block of a reply: either text or a tool call.
type Block struct {
	Text string
	Tool *ToolUse
}

// ToolUse is a tool call the CLI will execute for real (Bash, Write, Edit...).
type ToolUse struct {
	ID    string // generated when empty
	Name  string
	Input map[string]any
}

// Text returns a text block.
func Text(s string) Block { return Block{Text: s} }

// Bash returns a Bash tool call running command.
func Bash(command string) Block {
	return Block{Tool: &ToolUse{Name: "Bash", Input: map[string]any{"command": command, "description": "scripted"}}}
}

// Write returns a Write tool call creating path with content.
func Write(path, content string) Block {
	return Block{Tool: &ToolUse{Name: "Write", Input: map[string]any{"file_path": path, "content": content}}}
}

// Read returns a Read tool call; the CLI's Edit refuses a file it has not
// read in the session.
func Read(path string) Block {
	return Block{Tool: &ToolUse{Name: "Read", Input: map[string]any{"file_path": path}}}
}

// Edit returns an Edit tool call replacing old with new in path.
func Edit(path, old, new string) Block {
	return Block{Tool: &ToolUse{Name: "Edit", Input: map[string]any{"file_path": path, "old_string": old, "new_string": new}}}
}

// DefaultReply is the text sent when no step matches: side requests the CLI
// makes on its own (titles, summaries) and turns a script did not foresee.
const DefaultReply = "ok"

// Server is a running scripted Messages API server. Its methods are safe for
// concurrent use.
type Server struct {
	srv *httptest.Server

	mu       sync.Mutex
	steps    []Step
	requests []Request
	unknown  []string
	nextID   int
	logf     func(format string, args ...any)
}

// Request is one recorded POST /v1/messages.
type Request struct {
	Path     string
	Body     []byte
	Model    string
	Stream   bool
	Tools    int // number of tools offered: 0 marks the CLI's side requests
	Messages []Message
	Reply    string // cue of the step that answered, "" for the default reply
}

// Message is one message of a request's history.
type Message struct {
	Role    string
	Content json.RawMessage
}

// Text returns the concatenated text of the message: its text blocks, tool
// inputs and tool_result contents, so cues and assertions see what a tool
// printed too.
func (m Message) Text() string {
	var s string
	if json.Unmarshal(m.Content, &s) == nil {
		return s
	}
	var blocks []map[string]any
	if json.Unmarshal(m.Content, &blocks) != nil {
		return string(m.Content)
	}
	var b strings.Builder
	for _, bl := range blocks {
		collectText(&b, bl)
	}
	return b.String()
}

func collectText(b *strings.Builder, v any) {
	switch x := v.(type) {
	case string:
		b.WriteString(x)
		b.WriteByte('\n')
	case []any:
		for _, e := range x {
			collectText(b, e)
		}
	case map[string]any:
		for _, k := range []string{"text", "content", "input"} {
			if e, ok := x[k]; ok {
				if k == "input" {
					j, _ := json.Marshal(e)
					b.Write(j)
					b.WriteByte('\n')
					continue
				}
				collectText(b, e)
			}
		}
	}
}

// History returns the text of every message of the request, one per line
// group, prefixed with its role: what assertions on "the model saw X" use.
func (r Request) History() string {
	var b strings.Builder
	for _, m := range r.Messages {
		fmt.Fprintf(&b, "[%s] %s\n", m.Role, m.Text())
	}
	return b.String()
}

// LastUserText is the text of the latest user-role message, where cues are
// looked for. The CLI may append a system-role message after it.
func (r Request) LastUserText() string {
	for i := len(r.Messages) - 1; i >= 0; i-- {
		if r.Messages[i].Role == "user" {
			return r.Messages[i].Text()
		}
	}
	return ""
}

// Start starts a server on 127.0.0.1 answering with steps. logf, when not nil,
// receives a line per request (t.Logf fits).
func Start(logf func(format string, args ...any), steps ...Step) *Server {
	s := &Server{steps: steps, logf: logf}
	if s.logf == nil {
		s.logf = func(string, ...any) {}
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Panicf("modelserver: listen on 127.0.0.1: %v", err)
	}
	s.srv.Listener = l
	s.srv.Start()
	return s
}

// URL is the base URL to put in ANTHROPIC_BASE_URL.
func (s *Server) URL() string { return s.srv.URL }

// Close stops the server, cutting streams in flight.
func (s *Server) Close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// SetSteps replaces the script.
func (s *Server) SetSteps(steps ...Step) {
	s.mu.Lock()
	s.steps = steps
	s.mu.Unlock()
}

// Requests returns the recorded /v1/messages requests, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// AgentRequests returns the recorded requests that offered tools: the main
// conversation, without the CLI's side requests.
func (s *Server) AgentRequests() []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Tools > 0 {
			out = append(out, r)
		}
	}
	return out
}

// Unknown returns "METHOD path" of every request the server had no handler for.
func (s *Server) Unknown() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.unknown...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/messages":
		s.messages(w, r)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/messages/count_tokens":
		io.Copy(io.Discard, r.Body)
		writeJSON(w, map[string]any{"input_tokens": 100})
	default:
		// The CLI probes a few endpoints at start (feature flags, account,
		// MCP registry...). An empty object is enough for it to go on.
		io.Copy(io.Discard, r.Body)
		s.mu.Lock()
		s.unknown = append(s.unknown, r.Method+" "+r.URL.Path)
		s.mu.Unlock()
		s.logf("modelserver: unhandled %s %s", r.Method, r.URL.Path)
		writeJSON(w, map[string]any{})
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func (s *Server) messages(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var in struct {
		Model    string            `json:"model"`
		Stream   bool              `json:"stream"`
		Tools    []json.RawMessage `json:"tools"`
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		s.logf("modelserver: bad request body: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		writeJSON(w, map[string]any{"type": "error", "error": map[string]any{"type": "invalid_request_error", "message": err.Error()}})
		return
	}
	req := Request{Path: r.URL.Path, Body: body, Model: in.Model, Stream: in.Stream, Tools: len(in.Tools)}
	for _, m := range in.Messages {
		req.Messages = append(req.Messages, Message{Role: m.Role, Content: m.Content})
	}
	last := req.LastUserText()

	s.mu.Lock()
	var step *Step
	// Side requests (no tools) never get a scripted tool call: the CLI would
	// not run it, and a cue in the user's prompt would match them too.
	if req.Tools > 0 {
		for i := range s.steps {
			if s.steps[i].Cue != "" && strings.Contains(last, s.steps[i].Cue) {
				step = &s.steps[i]
				break
			}
		}
	}
	reply := []Block{Text(DefaultReply)}
	var delay, pause time.Duration
	if step != nil {
		reply, delay, pause, req.Reply = step.Reply, step.Delay, step.Pause, step.Cue
	}
	s.nextID++
	msgID := fmt.Sprintf("msg_%04d", s.nextID)
	for i := range reply {
		if reply[i].Tool != nil && reply[i].Tool.ID == "" {
			tu := *reply[i].Tool
			tu.ID = fmt.Sprintf("toolu_%04d_%d", s.nextID, i)
			reply[i] = Block{Tool: &tu}
		} else if reply[i].Tool != nil {
			// A fixed ID repeated across requests would confuse the CLI;
			// make it unique per reply.
			tu := *reply[i].Tool
			tu.ID = fmt.Sprintf("%s_%04d", tu.ID, s.nextID)
			reply[i] = Block{Tool: &tu}
		}
	}
	s.requests = append(s.requests, req)
	s.mu.Unlock()
	s.logf("modelserver: %s tools=%d msgs=%d cue=%q last=%q", msgID, req.Tools, len(req.Messages), req.Reply, trim(last, 120))

	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	stop := "end_turn"
	for _, b := range reply {
		if b.Tool != nil {
			stop = "tool_use"
		}
	}
	if !in.Stream {
		writeJSON(w, message(msgID, in.Model, reply, stop))
		return
	}
	streamReply(r.Context(), w, msgID, in.Model, reply, stop, pause)
}

func trim(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func usage() map[string]any {
	return map[string]any{"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
}

func contentBlock(b Block) map[string]any {
	if b.Tool != nil {
		return map[string]any{"type": "tool_use", "id": b.Tool.ID, "name": b.Tool.Name, "input": b.Tool.Input}
	}
	return map[string]any{"type": "text", "text": b.Text}
}

func message(id, model string, reply []Block, stop string) map[string]any {
	content := []any{}
	for _, b := range reply {
		content = append(content, contentBlock(b))
	}
	return map[string]any{
		"id": id, "type": "message", "role": "assistant", "model": model,
		"content": content, "stop_reason": stop, "stop_sequence": nil, "usage": usage(),
	}
}

func streamReply(ctx context.Context, w http.ResponseWriter, id, model string, reply []Block, stop string, pause time.Duration) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	send := func(event string, data any) {
		j, _ := json.Marshal(data)
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, j)
		if fl != nil {
			fl.Flush()
		}
	}
	send("message_start", map[string]any{"type": "message_start", "message": map[string]any{
		"id": id, "type": "message", "role": "assistant", "model": model, "content": []any{},
		"stop_reason": nil, "stop_sequence": nil, "usage": usage(),
	}})
	for i, b := range reply {
		if b.Tool != nil {
			send("content_block_start", map[string]any{"type": "content_block_start", "index": i,
				"content_block": map[string]any{"type": "tool_use", "id": b.Tool.ID, "name": b.Tool.Name, "input": map[string]any{}}})
			j, _ := json.Marshal(b.Tool.Input)
			send("content_block_delta", map[string]any{"type": "content_block_delta", "index": i,
				"delta": map[string]any{"type": "input_json_delta", "partial_json": string(j)}})
		} else {
			send("content_block_start", map[string]any{"type": "content_block_start", "index": i,
				"content_block": map[string]any{"type": "text", "text": ""}})
			for k, d := range Deltas(b.Text) {
				if k > 0 && pause > 0 {
					select {
					case <-time.After(pause):
					case <-ctx.Done():
						return
					}
				}
				send("content_block_delta", map[string]any{"type": "content_block_delta", "index": i,
					"delta": map[string]any{"type": "text_delta", "text": d}})
			}
		}
		send("content_block_stop", map[string]any{"type": "content_block_stop", "index": i})
	}
	send("message_delta", map[string]any{"type": "message_delta",
		"delta": map[string]any{"stop_reason": stop, "stop_sequence": nil}, "usage": map[string]any{"output_tokens": 5}})
	send("message_stop", map[string]any{"type": "message_stop"})
}

// Deltas splits text the way a reply streams it: pieces of three words
// (each with the spaces after it), so a text of more than three words
// arrives as several deltas. Joined, they are text.
func Deltas(text string) []string {
	var out []string
	start, words := 0, 0
	for i := 0; i < len(text); i++ {
		if text[i] == ' ' && (i+1 == len(text) || text[i+1] != ' ') {
			words++
			if words == 3 {
				out = append(out, text[start:i+1])
				start, words = i+1, 0
			}
		}
	}
	if start < len(text) || len(out) == 0 {
		out = append(out, text[start:])
	}
	return out
}
