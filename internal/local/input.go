package local

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/tether-dev/tether/internal/runner"
)

// inputAPI is how typed messages reach the runner: its HTTP API (AG-UI)
// on a loopback port, with a token of this supervisor's.
type inputAPI struct {
	url, token string
}

// setupInput picks the runner's address (listen, or a free loopback port)
// and returns the runner flags and environment that make it serve there.
func setupInput(listen string) (*inputAPI, []string, []string, error) {
	// The runner inherits the environment: a token the user set for their
	// own --listen is the one to send too (off loopback the runner needs
	// one).
	token := os.Getenv("TETHER_RUNNER_TOKEN")
	if listen == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, nil, fmt.Errorf("pick a loopback port for the runner's API: %w", err)
		}
		listen = ln.Addr().String()
		ln.Close()
		b := make([]byte, 16)
		rand.Read(b)
		token = hex.EncodeToString(b)
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--listen %q: %w", listen, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	api := &inputAPI{url: "http://" + net.JoinHostPort(host, port), token: token}
	var env []string
	if token != "" {
		env = append(env, "TETHER_RUNNER_TOKEN="+token)
	}
	return api, []string{"--listen", listen}, env, nil
}

// sendFollowUp sends text as one message, then reads in (when set).
func (s *Supervisor) sendFollowUp(ctx context.Context, text string, api *inputAPI, in io.Reader) {
	if s.send(ctx, text, api) {
		close(s.followUpTaken)
	}
	if in != nil {
		s.readInput(ctx, in, api)
	}
}

// send delivers one message, retrying while the runner does not take it;
// it reports whether the runner took it.
func (s *Supervisor) send(ctx context.Context, text string, api *inputAPI) bool {
	for attempt := 0; ; attempt++ {
		err := runner.SendMessage(ctx, api.url, api.token, "main", text, io.Discard)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		// SendMessage says "send to ..." when the request itself failed
		// (nothing listening, not ready): the message was not taken. Any
		// other error came after the runner accepted it.
		if !strings.HasPrefix(err.Error(), "send to ") {
			return true
		}
		if attempt == 20 {
			s.printf("the runner is not taking messages yet (%v); will send when it is back", err)
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// readInput sends every line typed on in as one user message, in order. A
// message the runner did not take (it is restarting) is retried until it
// is taken; one it took is never sent again, even if the runner dies before
// the turn ends: the runner delivers it again itself.
func (s *Supervisor) readInput(ctx context.Context, in io.Reader, api *inputAPI) {
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(in)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for {
		var line string
		var ok bool
		select {
		case <-ctx.Done():
			return
		case line, ok = <-lines:
			if !ok {
				return
			}
		}
		if strings.TrimSpace(line) == "" {
			continue
		}
		s.send(ctx, line, api)
	}
}
