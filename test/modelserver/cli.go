package modelserver

import (
	"os"
	"path/filepath"
)

// ClaudeVersion is the Claude Code CLI version hack/install-claude.sh installs
// and the runner's protocol facts were verified on. Keep in sync with it.
const ClaudeVersion = "2.1.328"

// ClaudePath is where hack/install-claude.sh installs the CLI under the
// cache directory: $TETHER_CACHE_DIR, else $CACHE, else ~/.cache/tether.
func ClaudePath() string {
	return filepath.Join(CacheDir(), "npm", "claude-code-"+ClaudeVersion, "node_modules", ".bin", "claude")
}

// CacheDir is where the hack/ scripts install test dependencies:
// $TETHER_CACHE_DIR, else $CACHE, else ~/.cache/tether.
func CacheDir() string {
	cache := os.Getenv("TETHER_CACHE_DIR")
	if cache == "" {
		cache = os.Getenv("CACHE")
	}
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "tether")
	}
	return cache
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
