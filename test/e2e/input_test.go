package e2e

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tether-dev/tether/internal/local"
	"github.com/tether-dev/tether/test/claudecli"
	"github.com/tether-dev/tether/test/modelserver"
)

// Lines typed on the terminal reach the agent one message each, through the
// runner's API on a private loopback port, with the real runner and CLI.
func TestTypedMessages(t *testing.T) {
	needCommand(t, "runner")
	claude := claudecli.Bin(t)
	srv := modelserver.Start(t.Logf,
		modelserver.Step{Cue: "[typed-1]", Reply: []modelserver.Block{modelserver.Text("answer one")}},
		modelserver.Step{Cue: "[typed-2]", Reply: []modelserver.Block{modelserver.Text("answer two")}},
	)
	defer srv.Close()
	tmp := t.TempDir()
	ws := filepath.Join(tmp, "ws")
	pr, pw := io.Pipe()
	out := &lockedBuf{}
	sup, err := local.New(local.Config{
		Workspace: ws, Session: "typed", StoreURL: "file://" + filepath.Join(tmp, "store"), Self: tetherBin,
		RunnerArgs: []string{"--claude-bin", claude}, Env: []string{"ANTHROPIC_BASE_URL=" + srv.URL(), "ANTHROPIC_API_KEY=test"},
		MemoryLimit: 2 << 30, LogDir: filepath.Join(tmp, "logs"), Out: out, Input: pr,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	// Typed before the runner is even up: held until it takes messages.
	fmt.Fprintln(pw, "first [typed-1]")
	fmt.Fprintln(pw, "")
	fmt.Fprintln(pw, "second [typed-2]")
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(out.String(), "answer two") {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no answer to the second message within 90s:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	text := out.String()
	if i, j := strings.Index(text, "answer one"), strings.Index(text, "answer two"); i < 0 || i > j {
		t.Errorf("answers missing or out of order:\n%s", text)
	}
	if n := strings.Count(text, "[turn 1, user] first [typed-1]") + strings.Count(text, "[turn 2, user] second [typed-2]"); n != 2 {
		t.Errorf("each typed line must be one user turn, in order:\n%s", text)
	}
	if strings.Contains(text, "[turn 3") {
		t.Errorf("the empty line became a turn:\n%s", text)
	}
}

type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
