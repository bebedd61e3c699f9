#!/usr/bin/env bash
# Usage: hack/install-go-tool.sh MODULE/PATH/TO/CMD VERSION DEST
# Builds a Go command from the module proxy at a pinned version and installs it
# at DEST (atomically), independent of this repo's go.mod.
set -euo pipefail
pkg=$1 version=$2 dest=$3
if [ -x "$dest" ]; then exit 0; fi
echo "hack/install-go-tool.sh: building $pkg@$version -> $dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" GOFLAGS=-mod=mod go install "$pkg@$version"
mkdir -p "$(dirname "$dest")"
mv "$tmp/$(basename "$pkg")" "$dest.tmp.$$"
mv "$dest.tmp.$$" "$dest"
