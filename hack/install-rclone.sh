#!/usr/bin/env bash
# install-rclone.sh puts Debian's rclone into the cache, for bench/compare's
# baseline (the reference platform's backup method) and its test in
# `make test`. It downloads the .deb with apt (no root needed for that, and
# nothing is installed system-wide) and unpacks it under
# $CACHE/debs/rclone-<version>/, with $CACHE/bin/rclone pointing at it; the
# Makefile puts $CACHE/bin first on PATH. rclone is one static binary, so
# unpacking is all an install needs.
#
# Idempotent: does nothing when $CACHE/bin/rclone runs. git, which the
# baseline also needs, is part of every machine this project runs on.
set -euo pipefail

CACHE=${TETHER_CACHE_DIR:-${CACHE:-$HOME/.cache/tether}}
bin="$CACHE/bin/rclone"
if [[ -x $bin ]] && "$bin" version >/dev/null 2>&1; then
	echo "install-rclone: $("$bin" version | head -1) in $bin: nothing to do"
	exit 0
fi
command -v apt-get >/dev/null || { echo "install-rclone: no apt-get here; put an rclone binary at $bin" >&2; exit 1; }
command -v dpkg-deb >/dev/null || { echo "install-rclone: no dpkg-deb here; put an rclone binary at $bin" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
download() { (cd "$tmp" && apt-get download -qq rclone >/dev/null 2>&1); }
if ! download; then
	# Fresh machines often have empty package lists; refreshing them needs root.
	if [[ $(id -u) -eq 0 ]]; then
		apt-get update -qq
	elif command -v sudo >/dev/null; then
		sudo apt-get update -qq
	else
		echo "install-rclone: apt-get download rclone failed and the package lists cannot be refreshed without root" >&2
		exit 1
	fi
	download || { echo "install-rclone: apt-get download rclone failed" >&2; exit 1; }
fi
deb=$(ls "$tmp"/rclone_*.deb)
version=$(dpkg-deb -f "$deb" Version)
dest="$CACHE/debs/rclone-$version"
rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
dpkg-deb -x "$deb" "$dest.tmp"
rm -rf "$dest" && mv "$dest.tmp" "$dest"
mkdir -p "$CACHE/bin"
ln -sfn "$dest/usr/bin/rclone" "$bin.tmp" && mv -f "$bin.tmp" "$bin"
"$bin" version >/dev/null
echo "install-rclone: $("$bin" version | head -1) in $bin"
