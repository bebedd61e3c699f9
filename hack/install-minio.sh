#!/usr/bin/env bash
# install-minio.sh builds the MinIO server that tether's store tests run against
# (internal/store/storetest starts it on 127.0.0.1) and caches it outside the repo.
#
# It builds from the Go module proxy because that is the only way in to these
# machines (no prebuilt downloads). A cold build takes minutes on 2 cores, so the
# result is cached at ~/.cache/tether/bin/minio-<version> and reused; a second run
# only checks the file is there.
#
# Needs only a Go toolchain (>= 1.24, the version MinIO's go.mod asks for). It does
# not read the repository's go.mod: it builds in an empty temp directory.
#
# Environment:
#   MINIO_VERSION      module version to build (default: pinned below)
#   TETHER_CACHE_DIR   cache root (default: $HOME/.cache/tether)
#
# Prints the path of the installed binary on its last line.
set -euo pipefail

# github.com/minio/minio publishes no semver tags, so the pin is the pseudo-version
# of the newest commit the proxy serves (master, 2026-02-12). The tests locate the
# binary by this exact string: keep it in sync with minioVersion in
# internal/store/storetest/minio.go.
MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
CACHE_DIR="${TETHER_CACHE_DIR:-$HOME/.cache/tether}"
BIN_DIR="$CACHE_DIR/bin"
TARGET="$BIN_DIR/minio-$MINIO_VERSION"

if [[ -x "$TARGET" ]]; then
	echo "install-minio: $TARGET already present, nothing to do"
	echo "$TARGET"
	exit 0
fi

command -v go >/dev/null || { echo "install-minio: go is not on PATH; install Go >= 1.24 first" >&2; exit 1; }

mkdir -p "$BIN_DIR"
# The temp dir sits inside BIN_DIR so the final rename never crosses devices and
# is atomic: a concurrent test run sees either no binary or a complete one.
WORK="$(mktemp -d "$BIN_DIR/.minio-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

echo "install-minio: building github.com/minio/minio@$MINIO_VERSION with $(go version)"
echo "install-minio: this takes ~10 minutes cold on 2 cores; output goes to $TARGET"
start=$(date +%s)
# cd into an empty dir and turn off workspaces so no go.mod or go.work around
# the caller influences the build; CGO off so no C compiler is needed.
(
	cd "$WORK"
	GOBIN="$WORK/bin" GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0 \
		go install -trimpath "github.com/minio/minio@$MINIO_VERSION"
)
"$WORK/bin/minio" --version >/dev/null || { echo "install-minio: built binary does not run" >&2; exit 1; }
mv -f "$WORK/bin/minio" "$TARGET"
echo "install-minio: built in $(( $(date +%s) - start ))s"
echo "$TARGET"
