#!/usr/bin/env bash
# install-rclone.sh installs Debian's rclone (and git), which bench/compare
# needs to run the reference platform's backup method as the baseline.
#
# Idempotent: does nothing when both are on PATH. Uses apt-get (the benchmark
# machines run as root); runs `apt-get update` only when the package is not
# known yet, because the lists are often empty in fresh containers.
set -euo pipefail

missing=()
command -v rclone >/dev/null || missing+=(rclone)
command -v git >/dev/null || missing+=(git)
if [[ ${#missing[@]} -eq 0 ]]; then
	echo "install-rclone: $(rclone version | head -1), $(git --version): nothing to do"
	exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
	command -v sudo >/dev/null || { echo "install-rclone: need root (or sudo) to apt-get install ${missing[*]}" >&2; exit 1; }
	SUDO=sudo
fi
command -v apt-get >/dev/null || { echo "install-rclone: no apt-get; install ${missing[*]} with your package manager" >&2; exit 1; }

if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
	$SUDO apt-get update -qq
fi
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-rclone: installed $(rclone version | head -1), $(git --version)"
