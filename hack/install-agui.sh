#!/usr/bin/env bash
# install-agui.sh installs the official AG-UI TypeScript client and core
# (@ag-ui/client, @ag-ui/core from npm) that the runner's AG-UI conformance
# test (internal/runner, TestAGUIConformance) runs its streams through: the
# client's HttpAgent, its verifyEvents and the core's event schemas. Only this
# script talks to the npm registry; the test runs offline.
#
# The install is cached at $CACHE_DIR/npm/agui-<version>; a second run only
# checks it is there.
#
# Environment:
#   AGUI_VERSION      npm version of both packages (default: pinned below)
#   TETHER_CACHE_DIR  cache root (default: $CACHE, then $HOME/.cache/tether)
#
# Prints the install directory (holding node_modules) on its last line.
set -euo pipefail

# Keep in sync with AGUIVersion in internal/runner/conformance_test.go.
AGUI_VERSION="${AGUI_VERSION:-1.0.0}"
CACHE_DIR="${TETHER_CACHE_DIR:-${CACHE:-$HOME/.cache/tether}}"
NPM_DIR="$CACHE_DIR/npm"
TARGET="$NPM_DIR/agui-$AGUI_VERSION"

check() {
	(cd "$1" && node -e 'const c = require("@ag-ui/client"), core = require("@ag-ui/core/schemas");
if (typeof c.HttpAgent !== "function" || typeof c.verifyEvents !== "function" || !core.EventSchemas) process.exit(1)') >/dev/null 2>&1
}

if [[ -d "$TARGET/node_modules" ]] && check "$TARGET"; then
	echo "install-agui: $TARGET already present, nothing to do" >&2
	echo "$TARGET"
	exit 0
fi

command -v npm >/dev/null || { echo "install-agui: npm is not on PATH; install Node.js >= 18 first" >&2; exit 1; }

mkdir -p "$NPM_DIR"
# Install next to the target and rename it into place, so a concurrent test
# run sees either no install or a complete one.
WORK="$(mktemp -d "$NPM_DIR/.agui-install.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
echo "install-agui: npm install @ag-ui/client@$AGUI_VERSION @ag-ui/core@$AGUI_VERSION into $TARGET" >&2
npm install --prefix "$WORK" --no-audit --no-fund --loglevel=error \
	"@ag-ui/client@$AGUI_VERSION" "@ag-ui/core@$AGUI_VERSION" >&2
check "$WORK" || { echo "install-agui: the installed packages do not load in node" >&2; exit 1; }
rm -rf "$TARGET"
mv "$WORK" "$TARGET"
trap - EXIT
echo "$TARGET"
