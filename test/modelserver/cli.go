package modelserver

import (
	"os"
	"path/filepath"
	"testing"
)

// ClaudeVersion is the Claude Code CLI version hack/install-claude.sh installs
// and the runner's protocol facts were verified on. Keep in sync with it.
const ClaudeVersion = "2.1.328"

// ClaudeBin returns the path of the real Claude Code CLI: $TETHER_CLAUDE_BIN,
// else the install of hack/install-claude.sh under $TETHER_CACHE_DIR, $CACHE or
// ~/.cache/tether. When it is missing the test is skipped, or fails when
// CI=true: a CI without the CLI would silently test nothing. With -short the
// test is skipped: it starts real CLI processes.
func ClaudeBin(t testing.TB) string {
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
	cache := os.Getenv("TETHER_CACHE_DIR")
	if cache == "" {
		cache = os.Getenv("CACHE")
	}
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "tether")
	}
	p := filepath.Join(cache, "npm", "claude-code-"+ClaudeVersion, "node_modules", ".bin", "claude")
	if _, err := os.Stat(p); err != nil {
		msg := "the Claude Code CLI is not installed at " + p + "; run hack/install-claude.sh (make claude-cli) or set TETHER_CLAUDE_BIN"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// CLIEnv returns the environment for a CLI that talks only to this server and
// keeps its state in configDir: no telemetry, no updater, no other traffic.
// HOME is an empty directory next to configDir: the CLI's Bash tool sources
// the user's shell rc files, and a developer's ~/.bashrc (pyenv rehash
// waiting on a lock, say) must not make tests slow or flaky.
func (s *Server) CLIEnv(configDir string) []string {
	home := filepath.Clean(configDir) + "-home"
	os.MkdirAll(home, 0o755)
	env := []string{
		"HOME=" + home,
		"ANTHROPIC_BASE_URL=" + s.URL(),
		"ANTHROPIC_API_KEY=test",
		"CLAUDE_CONFIG_DIR=" + configDir,
		"DISABLE_TELEMETRY=1",
		"DISABLE_AUTOUPDATER=1",
		"DISABLE_ERROR_REPORTING=1",
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
	}
	for _, k := range []string{"PATH", "TMPDIR", "LANG"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}
