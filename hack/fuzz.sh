#!/usr/bin/env bash
# fuzz.sh runs every Go fuzz target of the module (each `func FuzzX` in a
# _test.go file), one after the other, for FUZZTIME each (default 10s), and
# prints a table: target, package, time, corpus size (the seeds plus what the
# fuzzer kept in its cache), result. `make test` runs it short; before
# resolving a decoder change, run it long: make fuzz FUZZTIME=10m.
#
# A crash fails the script and leaves the input under the package's
# testdata/fuzz/FuzzX/, where `go test` replays it from then on: commit it
# with the fix.
set -euo pipefail

FUZZTIME=${FUZZTIME:-10s}
GO=${GO:-go}
cd "$(dirname "$0")/.."
cachedir=$($GO env GOCACHE)/fuzz/$($GO list -m)

# Each line: "<package dir> <FuzzName>".
mapfile -t targets < <(grep -rHoE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' . |
	sed -E 's#^\./(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*).*#\1 \2#' | sort -u)
if [[ ${#targets[@]} -eq 0 ]]; then
	echo "fuzz: no fuzz targets found" >&2
	exit 1
fi

failed=0
rows=()
for t in "${targets[@]}"; do
	dir=${t% *} name=${t#* }
	start=$(date +%s)
	log=$(mktemp)
	if $GO test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "./$dir" >"$log" 2>&1; then
		result=ok
	else
		result=FAIL
		failed=1
		echo "fuzz: $name in ./$dir failed:" >&2
		tail -40 "$log" >&2
	fi
	seeds=$(find "$dir/testdata/fuzz/$name" -type f 2>/dev/null | wc -l || true)
	kept=$(find "$cachedir/$dir/$name" -type f 2>/dev/null | wc -l || true)
	rows+=("$(printf '%-24s %-22s %6ss %7d %7d  %s' "$name" "./$dir" "$(($(date +%s) - start))" "$seeds" "$kept" "$result")")
	rm -f "$log"
done
printf '%-24s %-22s %7s %7s %7s  %s\n' target package time testdata cached result
printf '%s\n' "${rows[@]}"
exit $failed
