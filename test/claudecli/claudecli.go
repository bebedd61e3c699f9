// Package claudecli finds the real Claude Code CLI for tests. It is apart
// from modelserver, which the demo links into the tether binary, so that the
// binary does not carry the testing package.
package claudecli

import (
	"os"
	"testing"

	"github.com/tether-dev/tether/test/modelserver"
)

// Bin returns the path of the real Claude Code CLI: $TETHER_CLAUDE_BIN,
// else the install of hack/install-claude.sh under $TETHER_CACHE_DIR, $CACHE or
// ~/.cache/tether. When it is missing the test is skipped, or fails when
// CI=true: a CI without the CLI would silently test nothing. With -short the
// test is skipped: it starts real CLI processes.
func Bin(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: tests with the real Claude Code CLI are left out")
	}
	if p := os.Getenv("TETHER_CLAUDE_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("TETHER_CLAUDE_BIN=%s: %v", p, err)
		}
		return p
	}
	p := modelserver.ClaudePath()
	if _, err := os.Stat(p); err != nil {
		msg := "the Claude Code CLI is not installed at " + p + "; run hack/install-claude.sh (make claude-cli) or set TETHER_CLAUDE_BIN"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}
