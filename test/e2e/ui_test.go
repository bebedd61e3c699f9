package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tether-dev/tether/internal/local"
	"github.com/tether-dev/tether/test/browser"
	"github.com/tether-dev/tether/test/claudecli"
	"github.com/tether-dev/tether/test/modelserver"
)

// TestWebPage drives `tether run --ui` in a real headless Chromium, with
// the real runner and CLI and the scripted model: the list shows the
// session; a message typed into the page reaches the model and the reply
// streams in delta by delta; a reload in the middle of a turn shows the
// whole conversation, with the streaming reply once. With
// TETHER_UI_SCREENSHOTS=dir it leaves its screenshots there (the README's
// come from docs/, written that way).
func TestWebPage(t *testing.T) {
	needCommand(t, "runner")
	claude := claudecli.Bin(t)
	first := "The page sent this, and the reply streams in word by word."
	second := "A longer reply, so that the page can be reloaded while it is still streaming in, one piece after another, until the end of it."
	srv := modelserver.Start(t.Logf,
		modelserver.Step{Cue: "[page-1]", Reply: []modelserver.Block{modelserver.Text(first)}, Pause: 120 * time.Millisecond},
		modelserver.Step{Cue: "[page-2]", Reply: []modelserver.Block{modelserver.Text(second)}, Pause: 300 * time.Millisecond},
	)
	defer srv.Close()
	tmp := t.TempDir()
	addrc := make(chan string, 1)
	out := &lockedBuf{}
	sup, err := local.New(local.Config{
		Workspace: filepath.Join(tmp, "ws"), Session: "page", StoreURL: "file://" + filepath.Join(tmp, "store"), Self: tetherBin,
		RunnerArgs: []string{"--claude-bin", claude}, Env: []string{"ANTHROPIC_BASE_URL=" + srv.URL(), "ANTHROPIC_API_KEY=test"},
		MemoryLimit: 2 << 30, LogDir: filepath.Join(tmp, "logs"), Out: out,
		UI: "127.0.0.1:0", OnUI: func(a string) { addrc <- a },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("tether run: %v", err)
		}
		if t.Failed() {
			t.Logf("tether run printed:\n%s", out.String())
		}
	}()
	var base string
	select {
	case a := <-addrc:
		base = "http://" + a
	case <-time.After(60 * time.Second):
		t.Fatalf("the page did not start within 60s:\n%s", out.String())
	}

	bctx := browser.New(t)
	bctx, tcancel := context.WithTimeout(bctx, 4*time.Minute)
	defer tcancel()
	shots := os.Getenv("TETHER_UI_SCREENSHOTS")
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			if shots == "" {
				return chromedp.Void{}, nil
			}
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return chromedp.Void{}, err
			}
			return chromedp.Void{}, os.WriteFile(filepath.Join(shots, name), png, 0o644)
		}
	}
	// waitJS polls a JavaScript condition.
	waitJS := func(what, cond string, within time.Duration) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			deadline := time.Now().Add(within)
			for {
				ok, err := chromedp.Evaluate[bool](cond)(ctx, tg)
				if err != nil {
					return chromedp.Void{}, err
				}
				if ok {
					return chromedp.Void{}, nil
				}
				if time.Now().After(deadline) {
					page, _ := chromedp.Evaluate[string](`document.body.innerText`)(ctx, tg)
					return chromedp.Void{}, fmt.Errorf("%s: not within %v; the page says:\n%s", what, within, page)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	conv := `document.getElementById("conversation").innerText`
	row := chromedp.CSS(`tr[data-session="page"]`)

	// The list shows the session, then live: running once the runner is.
	if err := chromedp.Do(bctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(row),
		waitJS("the session running in the list", `/ready|running/.test(document.querySelector('tr[data-session="page"] .phase').innerText)`, 90*time.Second),
		shot("ui-list.png"),
	); err != nil {
		t.Fatal(err)
	}
	if text, err := chromedp.Run(bctx, chromedp.Text(row)); err != nil || !strings.Contains(text, "claude") {
		t.Errorf("the list's row: %q %v", text, err)
	}

	// A message typed into the page: the reply streams in as deltas.
	if err := chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS(`tr[data-session="page"] a`)),
		waitJS("the session page connected", `!!(window.tether && window.tether.ready)`, 30*time.Second),
		chromedp.SendKeys(chromedp.CSS("#text"), "hello from the page [page-1]"),
		chromedp.KeyEvent("\r"),
		waitJS("the reply", conv+`.includes(`+jsString(first)+`)`, 90*time.Second),
	); err != nil {
		t.Fatal(err)
	}
	deltas, err := chromedp.Run(bctx, chromedp.Evaluate[int](`window.tether.deltas`))
	if err != nil {
		t.Fatal(err)
	}
	if want := len(modelserver.Deltas(first)); deltas < want {
		t.Errorf("the reply reached the page in %d deltas, want %d (one per streamed piece)", deltas, want)
	}

	// A reload in the middle of the next reply: the whole conversation is
	// back, and the reply goes on, once.
	if err := chromedp.Do(bctx,
		chromedp.SendKeys(chromedp.CSS("#text"), "and now a long one [page-2]"),
		chromedp.KeyEvent("\r"),
		waitJS("the second reply streaming", conv+`.includes("A longer reply")`, 90*time.Second),
		chromedp.Reload(),
		waitJS("the page back after the reload", `!!(window.tether && window.tether.ready)`, 30*time.Second),
		waitJS("the second reply, whole", conv+`.includes(`+jsString(second)+`)`, 90*time.Second),
		shot("ui-session.png"),
	); err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(bctx, chromedp.Evaluate[string](conv))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"hello from the page [page-1]", first, "and now a long one [page-2]"} {
		if !strings.Contains(text, want) {
			t.Errorf("after the reload the conversation lacks %q:\n%s", want, text)
		}
	}
	if n := strings.Count(text, "A longer reply"); n != 1 {
		t.Errorf("after the reload the streaming reply shows %d times:\n%s", n, text)
	}
}

func jsString(s string) string { return fmt.Sprintf("%q", s) }
