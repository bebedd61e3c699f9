package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tether-dev/tether/test/browser"
)

// TestPageLoadAndDeltaLatency measures the page in a real headless
// Chromium against a runner whose conversation holds 10,000 messages: the
// session page shows all of them (goal: laid out within 1 s of the
// navigation), and a delta the runner sends afterwards reaches the page
// (goal: within 100 ms). It logs both figures.
func TestPageLoadAndDeltaLatency(t *testing.T) {
	const n = 10000
	msgs := make([]map[string]any, 0, n)
	for i := range n {
		role, text := "user", fmt.Sprintf("message %d from the user: please look at file%04d.go and fix what fails there", i, i)
		if i%2 == 1 {
			role, text = "assistant", fmt.Sprintf("message %d from the agent: I read file%04d.go, the test fails because the loop stops one short; fixed and ran it again, it passes now", i, i)
		}
		msgs = append(msgs, map[string]any{"id": fmt.Sprintf("m%d", i), "role": role, "content": text})
	}
	frame := func(w http.ResponseWriter, v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, "data: %s\n\n", b)
		w.(http.Flusher).Flush()
	}
	sendDelta := make(chan time.Time, 1)
	runner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/agui/events" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		frame(w, map[string]any{"type": "RUN_STARTED", "threadId": "main", "runId": "run-1"})
		frame(w, map[string]any{"type": "MESSAGES_SNAPSHOT", "messages": msgs})
		frame(w, map[string]any{"type": "STATE_SNAPSHOT", "snapshot": map[string]any{"phase": "busy", "restarts": 3}})
		frame(w, map[string]any{"type": "TEXT_MESSAGE_START", "messageId": "live", "role": "assistant"})
		select {
		case at := <-sendDelta:
			_ = at
			frame(w, map[string]any{"type": "TEXT_MESSAGE_CONTENT", "messageId": "live", "delta": "the live delta"})
		case <-r.Context().Done():
			return
		}
		<-r.Context().Done()
	}))
	t.Cleanup(runner.Close) // after the browser is gone (cleanups run last in, first out)
	b := &fakeBackend{sessions: []Session{{Name: "big", Phase: "running"}}, runner: Runner{URL: runner.URL}}
	page := httptest.NewServer(NewHandler(b, Options{}))
	t.Cleanup(page.Close)

	bctx := browser.New(t)
	tctx, tcancel := context.WithTimeout(bctx, 2*time.Minute)
	defer tcancel()
	wait := func(cond string) error {
		deadline := time.Now().Add(30 * time.Second)
		for {
			ok, err := chromedp.Run(tctx, chromedp.Evaluate[bool](cond))
			if err != nil || ok {
				return err
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: not within 30s", cond)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if err := chromedp.Do(tctx, chromedp.Navigate(page.URL+"/sessions/big")); err != nil {
		t.Fatal(err)
	}
	if err := wait(`!!(window.tether && window.tether.ready)`); err != nil {
		t.Fatal(err)
	}
	readyAt, err := chromedp.Run(tctx, chromedp.Evaluate[float64](`window.tether.readyAt`))
	if err != nil {
		t.Fatal(err)
	}
	shown, err := chromedp.Run(tctx, chromedp.Evaluate[int](`document.querySelectorAll("#conversation .msg").length`))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a session page of %d messages: all on the page %.0f ms after the navigation started", n, readyAt)
	if shown < n {
		t.Errorf("the page shows %d messages, want %d", shown, n)
	}
	// The goal is 1 s (the figure is in the log, and the README); the test
	// fails only far beyond it, where rendering would have gone quadratic,
	// so that a loaded CI machine does not make it flaky.
	if readyAt > 5000 {
		t.Errorf("the page of %d messages took %.0f ms to load; the goal is 1000", n, readyAt)
	}

	// A delta: from the runner writing it to the page having it.
	sent := time.Now()
	sendDelta <- sent
	if err := wait(`!!window.tether.lastDelta`); err != nil {
		t.Fatal(err)
	}
	wall, err := chromedp.Run(tctx, chromedp.Evaluate[float64](`window.tether.lastDelta.wall`))
	if err != nil {
		t.Fatal(err)
	}
	latency := time.UnixMilli(int64(wall)).Sub(sent)
	t.Logf("a delta reached the page %v after the runner wrote it", latency)
	if latency > time.Second {
		t.Errorf("a delta took %v to reach the page; the goal is 100ms", latency)
	}
	text, err := chromedp.Run(tctx, chromedp.Evaluate[string](`document.querySelector('.msg[data-id="live"] .body').textContent`))
	if err != nil || !strings.Contains(text, "the live delta") {
		t.Errorf("the live message says %q (%v)", text, err)
	}
}
