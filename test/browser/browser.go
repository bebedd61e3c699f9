// Package browser starts the headless Chromium the web page's tests drive:
// Debian's, unpacked into the cache by hack/install-chromium.sh (make
// chromium).
package browser

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/tether-dev/tether/test/modelserver"
)

// Path is where hack/install-chromium.sh puts the browser.
func Path() string { return filepath.Join(modelserver.CacheDir(), "bin", "chromium") }

// New starts a headless Chromium for the test and returns a chromedp
// context of one tab of it, closed when the test ends. Without the browser
// the test fails in CI (CI=true) and skips elsewhere.
func New(t *testing.T) context.Context {
	t.Helper()
	bin := Path()
	if _, err := os.Stat(bin); err != nil {
		msg := "no chromium at " + bin + ": run hack/install-chromium.sh (make chromium)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.WindowSize(1280, 800), chromedp.Flag("disable-gpu", true))...)
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { bcancel(); acancel() })
	// The browser starts here, outside what a test measures.
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}
