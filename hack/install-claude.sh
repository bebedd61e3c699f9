#!/usr/bin/env bash
# install-claude.sh installs the real Claude Code CLI that the runner's tests
# drive (internal/runner, internal/agent) against a scripted Messages-API server
# on 127.0.0.1. No network is used by the tests themselves; only this script talks
# to the npm registry.
#
# The version is pinned because the runner's protocol facts (stream-json lines,
# transcript location, resume messages) were verified on it; see
# shared/DESIGN.md "The agent CLI". The install is cached at
# $CACHE_DIR/npm/claude-code-<version> and a second run only checks it is there.
#
# Environment:
#   CLAUDE_CODE_VERSION  npm version to install (default: pinned below)
#   TETHER_CACHE_DIR     cache root (default: $CACHE, then $HOME/.cache/tether)
#
# Prints the path of the installed `claude` binary on its last line. Tests find
# it there, or through TETHER_CLAUDE_BIN.
set -euo pipefail

# Keep in sync with ClaudeVersion in test/modelserver/cli.go.
CLAUDE_CODE_VERSION="${CLAUDE_CODE_VERSION:-2.1.328}"
CACHE_DIR="${TETHER_CACHE_DIR:-${CACHE:-$HOME/.cache/tether}}"
NPM_DIR="$CACHE_DIR/npm"
TARGET="$NPM_DIR/claude-code-$CLAUDE_CODE_VERSION"
BIN="$TARGET/node_modules/.bin/claude"

if [[ -x "$BIN" ]] && "$BIN" --version >/dev/null 2>&1; then
	echo "install-claude: $TARGET already present, nothing to do" >&2
	echo "$BIN"
	exit 0
fi

command -v npm >/dev/null || { echo "install-claude: npm is not on PATH; install Node.js >= 18 first" >&2; exit 1; }

mkdir -p "$NPM_DIR"
# Install into a temp dir next to the target and rename it into place, so a
# concurrent test run sees either no install or a complete one.
WORK="$(mktemp -d "$NPM_DIR/.claude-install.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

echo "install-claude: npm install @anthropic-ai/claude-code@$CLAUDE_CODE_VERSION into $TARGET" >&2
npm install --prefix "$WORK" --no-audit --no-fund --loglevel=error \
	"@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" >&2
"$WORK/node_modules/.bin/claude" --version >/dev/null || {
	echo "install-claude: installed CLI does not run: $WORK/node_modules/.bin/claude --version failed" >&2
	exit 1
}
rm -rf "$TARGET"
mv "$WORK" "$TARGET"
trap - EXIT
echo "$BIN"
