#!/usr/bin/env bash
# install-chromium.sh puts Debian's chromium into the cache, for the web
# page's browser test in `make test` (headless, driven by chromedp). Like
# install-rclone.sh it installs nothing system-wide and needs no root once
# the package lists are there: it asks apt which packages an install of
# chromium would add to this machine (`apt-get -s`), downloads those .debs,
# unpacks them all under $CACHE/debs/chromium-<version>/ and writes
# $CACHE/bin/chromium, a wrapper that runs the unpacked browser with the
# unpacked libraries and fonts. On a machine that already has some of the
# libraries, fewer packages are fetched; the wrapper finds the rest where
# the system keeps them.
#
# Idempotent: does nothing when $CACHE/bin/chromium runs.
set -euo pipefail

CACHE=${TETHER_CACHE_DIR:-${CACHE:-$HOME/.cache/tether}}
bin="$CACHE/bin/chromium"
if [[ -x $bin ]] && "$bin" --headless --no-sandbox --version >/dev/null 2>&1; then
	echo "install-chromium: $("$bin" --headless --no-sandbox --version 2>/dev/null | head -1) in $bin: nothing to do"
	exit 0
fi
for tool in apt-get dpkg-deb; do
	command -v "$tool" >/dev/null || { echo "install-chromium: no $tool here; put a chromium at $bin" >&2; exit 1; }
done

# The packages an install would add; fonts-liberation so that pages (and
# the README's screenshots) have a font whatever the machine has.
want() { apt-get -s install --no-install-recommends chromium fonts-liberation 2>/dev/null | awk '/^Inst /{print $2}'; }
pkgs=$(want || true)
if [[ -z $pkgs ]] || ! grep -qx chromium <<<"$pkgs"; then
	# Fresh machines often have empty package lists; refreshing them needs root.
	if [[ $(id -u) -eq 0 ]]; then
		apt-get update -qq
	elif command -v sudo >/dev/null; then
		sudo apt-get update -qq
	else
		echo "install-chromium: apt knows no chromium to install and the package lists cannot be refreshed without root" >&2
		exit 1
	fi
	pkgs=$(want || true)
fi
grep -qx chromium <<<"$pkgs" || { echo "install-chromium: apt-get -s install chromium lists no chromium to install" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck disable=SC2086 # one word per package
(cd "$tmp" && apt-get download -qq $pkgs >"$tmp/apt.log" 2>&1) || { cat "$tmp/apt.log" >&2; echo "install-chromium: apt-get download failed for: $pkgs" >&2; exit 1; }
version=$(dpkg-deb -f "$tmp"/chromium_*.deb Version)
dest="$CACHE/debs/chromium-$version"
rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
for deb in "$tmp"/*.deb; do
	dpkg-deb -x "$deb" "$dest.tmp"
done
# Fonts: the system's, then the unpacked ones (fontconfig reads both).
mkdir -p "$dest.tmp/etc/tether-fonts"
cat >"$dest.tmp/etc/tether-fonts/fonts.conf" <<EOF
<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "fonts.dtd">
<fontconfig>
  <include ignore_missing="yes">/etc/fonts/fonts.conf</include>
  <dir>$dest/usr/share/fonts</dir>
  <cachedir>$dest/var/cache/fontconfig</cachedir>
</fontconfig>
EOF
rm -rf "$dest" && mv "$dest.tmp" "$dest"
# Every directory of the unpacked packages that holds a library (some sit
# in subdirectories, like pulseaudio's).
libdirs=()
for d in "$dest/usr/lib" "$dest/lib"; do [[ -d $d ]] && libdirs+=("$d"); done
libs=$(find "${libdirs[@]}" -name '*.so*' -printf '%h\n' | sort -u | paste -sd:)
mkdir -p "$CACHE/bin"
cat >"$bin.tmp" <<EOF
#!/bin/sh
# Written by hack/install-chromium.sh: chromium $version unpacked in $dest.
export LD_LIBRARY_PATH="$libs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export FONTCONFIG_FILE="$dest/etc/tether-fonts/fonts.conf"
exec "$dest/usr/lib/chromium/chromium" "\$@"
EOF
chmod +x "$bin.tmp" && mv -f "$bin.tmp" "$bin"
"$bin" --headless --no-sandbox --version >/dev/null
echo "install-chromium: $("$bin" --headless --no-sandbox --version 2>/dev/null | head -1) in $bin"
