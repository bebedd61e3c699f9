#!/usr/bin/env bash
# baseline.sh is the reference platform's backup method, written down so that
# bench/compare can measure it next to tether on the same workspace:
#
#   state sync  (every cycle)   rclone sync --checksum of the state directories
#   repo backup (every 5th)     per repository: git bundle create --all,
#                               git diff HEAD, git diff --cached, uploaded
#   restore                     rclone copy of the state, then per repository:
#                               git clone from the bundle, git apply the diffs
#
# Usage: baseline.sh sync | backup | restore DEST | loop
#   sync     one state-sync cycle
#   backup   one repo-backup cycle (state sync + repo backup), as the reference
#            does on every 5th cycle
#   restore  the whole workspace into DEST (must not exist)
#   loop     the reference schedule: INITIAL_DELAY, then a state sync every
#            INTERVAL seconds and a repo backup on every 5th cycle (the kill
#            harness runs it with the times scaled down)
#
# Environment: WS (workspace), REMOTE (rclone remote path, e.g. bench:bucket/x),
# the remote itself configured through RCLONE_CONFIG_<NAME>_* variables,
# INTERVAL and INITIAL_DELAY (loop only). rclone's end-of-run statistics go to
# stderr as JSON lines; bench/compare adds up their "bytes" to count uploads.
set -euo pipefail

: "${WS:?WS must name the workspace}" "${REMOTE:?REMOTE must name the rclone remote path}"
RCLONE_FLAGS=(--use-json-log --stats 1h --stats-log-level NOTICE --log-level NOTICE)
# The state directories the reference platform syncs: everything but repos/.
STATE_FILTER=(--filter '+ /.claude/**' --filter '+ /.tether/**' --filter '+ /artifacts/**' --filter '+ /file-uploads/**' --filter '- **')

state_sync() {
	rclone sync --checksum "${STATE_FILTER[@]}" "${RCLONE_FLAGS[@]}" "$WS" "$REMOTE/state"
}

repo_backup() {
	local tmp repo name
	tmp=$(mktemp -d)
	for repo in "$WS"/repos/*/; do
		[[ -e "$repo/.git" ]] || continue
		name=$(basename "$repo")
		mkdir -p "$tmp/$name"
		git -C "$repo" bundle create -q "$tmp/$name/repo.bundle" --all
		git -C "$repo" diff HEAD >"$tmp/$name/uncommitted.patch"
		git -C "$repo" diff --cached >"$tmp/$name/staged.patch"
	done
	# Uploaded every time (--ignore-times), as the reference uploads each new
	# bundle whole: without it rclone would find an unchanged bundle's hash
	# equal and skip it.
	rclone copy --ignore-times "${RCLONE_FLAGS[@]}" "$tmp" "$REMOTE/repos"
	rm -rf "$tmp"
}

restore() {
	local dest=$1 tmp name
	[[ ! -e "$dest" ]] || { echo "baseline.sh: restore target $dest exists" >&2; exit 1; }
	rclone copy "${RCLONE_FLAGS[@]}" "$REMOTE/state" "$dest"
	tmp=$(mktemp -d)
	rclone copy "${RCLONE_FLAGS[@]}" "$REMOTE/repos" "$tmp"
	mkdir -p "$dest/repos"
	for d in "$tmp"/*/; do
		[[ -f "$d/repo.bundle" ]] || continue
		name=$(basename "$d")
		git clone -q "$d/repo.bundle" "$dest/repos/$name"
		# The staged diff goes to the index, the diff against HEAD to the
		# working tree. A binary change makes git apply refuse the whole
		# patch ("cannot apply binary patch without full index line"): the
		# reference logs and goes on, and so does this script.
		if [[ -s "$d/staged.patch" ]]; then
			git -C "$dest/repos/$name" apply --cached "$d/staged.patch" 2>&1 | sed 's/^/baseline.sh: git apply --cached: /' >&2 || true
		fi
		if [[ -s "$d/uncommitted.patch" ]]; then
			git -C "$dest/repos/$name" apply "$d/uncommitted.patch" 2>&1 | sed 's/^/baseline.sh: git apply: /' >&2 || true
		fi
	done
	rm -rf "$tmp"
}

case "${1:-}" in
sync) state_sync ;;
backup)
	state_sync
	repo_backup
	;;
restore) restore "${2:?restore needs a target directory}" ;;
loop)
	sleep "${INITIAL_DELAY:?}"
	n=0
	while :; do
		n=$((n + 1))
		state_sync || true
		if ((n % 5 == 0)); then repo_backup || true; fi
		sleep "${INTERVAL:?}"
	done
	;;
*)
	echo "usage: baseline.sh sync | backup | restore DEST | loop" >&2
	exit 2
	;;
esac
