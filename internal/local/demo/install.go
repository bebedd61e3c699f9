package demo

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/tether-dev/tether/test/modelserver"
)

// ClaudeBin finds the pinned Claude Code CLI: $TETHER_CLAUDE_BIN, else the
// install of hack/install-claude.sh under cacheDir; when it is missing it is
// installed there from npm the same way (into a temp dir renamed into place,
// so an interrupted install never looks complete).
func ClaudeBin(cacheDir string, progress io.Writer) (string, error) {
	if p := os.Getenv("TETHER_CLAUDE_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("TETHER_CLAUDE_BIN=%s: %w", p, err)
		}
		return p, nil
	}
	npmDir := filepath.Join(cacheDir, "npm")
	target := filepath.Join(npmDir, "claude-code-"+modelserver.ClaudeVersion)
	bin := filepath.Join(target, "node_modules", ".bin", "claude")
	if err := exec.Command(bin, "--version").Run(); err == nil {
		return bin, nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", fmt.Errorf("the demo needs the Claude Code CLI %s and npm to install it; install Node.js >= 18 (with npm) first", modelserver.ClaudeVersion)
	}
	if err := os.MkdirAll(npmDir, 0o755); err != nil {
		return "", err
	}
	work, err := os.MkdirTemp(npmDir, ".claude-install.")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	fmt.Fprintf(progress, "tether-demo: installing @anthropic-ai/claude-code@%s from npm into %s\n", modelserver.ClaudeVersion, target)
	cmd := exec.Command(npm, "install", "--prefix", work, "--no-audit", "--no-fund", "--loglevel=error", "@anthropic-ai/claude-code@"+modelserver.ClaudeVersion)
	cmd.Stdout, cmd.Stderr = progress, progress
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("npm install @anthropic-ai/claude-code@%s: %w", modelserver.ClaudeVersion, err)
	}
	if err := exec.Command(filepath.Join(work, "node_modules", ".bin", "claude"), "--version").Run(); err != nil {
		return "", fmt.Errorf("the installed Claude Code CLI does not run (%v)", err)
	}
	os.RemoveAll(target)
	if err := os.Rename(work, target); err != nil {
		return "", err
	}
	return bin, nil
}
