#!/usr/bin/env bash
# install-envtest.sh builds the control-plane binaries that the operator's
# envtest tests run against (a real kube-apiserver and etcd, no kubelet) and
# caches them outside the repo.
#
# There are no prebuilt downloads on these machines (only the Go module proxy),
# so both are compiled from source with the pinned build module in
# hack/tools/envtest (k8s.io/kubernetes with its staging modules replaced by the
# published v0.<minor>.<patch> versions, and go.etcd.io/etcd/server/v3). A cold
# build takes ~10 minutes on 2 cores; afterwards a run only checks the files.
#
# Result: $CACHE/envtest/<version>/{kube-apiserver,etcd}, the layout that
# setup-envtest uses, so KUBEBUILDER_ASSETS=<that dir> works for any envtest user.
# internal/operator's tests look there by default.
#
# Needs only a Go toolchain (>= the go line in hack/tools/envtest/go.mod).
#
# Environment:
#   TETHER_CACHE_DIR   cache root (default: $CACHE, else $HOME/.cache/tether)
#
# Prints the asset directory on its last line.
set -euo pipefail

# Keep in sync with hack/tools/envtest/go.mod (k8s.io/kubernetes and the
# replaces) and with envtestVersion in internal/operator/envtest_test.go.
KUBE_VERSION="1.37.2"

HERE="$(cd "$(dirname "$0")" && pwd)"
TOOLS="$HERE/tools/envtest"
CACHE_DIR="${TETHER_CACHE_DIR:-${CACHE:-$HOME/.cache/tether}}"
ASSETS="$CACHE_DIR/envtest/$KUBE_VERSION"

if [[ -x "$ASSETS/kube-apiserver" && -x "$ASSETS/etcd" ]]; then
	echo "install-envtest: $ASSETS already has kube-apiserver and etcd, nothing to do"
	echo "$ASSETS"
	exit 0
fi

command -v go >/dev/null || { echo "install-envtest: go is not on PATH; install Go first" >&2; exit 1; }

mkdir -p "$CACHE_DIR/envtest"
# Build into a temp dir next to the final one so the rename is atomic on the
# same filesystem: a concurrent test sees either nothing or both binaries.
WORK="$(mktemp -d "$CACHE_DIR/envtest/.build-$KUBE_VERSION.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

echo "install-envtest: building kube-apiserver $KUBE_VERSION and etcd with $(go version)"
echo "install-envtest: cold this takes ~10 minutes on 2 cores; output goes to $ASSETS"
start=$(date +%s)
# GOWORK=off and -mod=mod: build strictly from the tools module's go.mod/go.sum,
# whatever workspace or flags the caller has. CGO off: no C compiler needed.
build() { # build <output name> <package> <extra ldflags>
	echo "install-envtest: go build $2"
	(cd "$TOOLS" && GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 \
		go build -trimpath -ldflags="-s $3" -o "$WORK/$1" "$2")
}
build etcd go.etcd.io/etcd/server/v3 ""
# Stamp the version the apiserver reports (otherwise v0.0.0-master).
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver \
	"-X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)"

"$WORK/etcd" --version >/dev/null || { echo "install-envtest: built etcd does not run" >&2; exit 1; }
"$WORK/kube-apiserver" --version >/dev/null || { echo "install-envtest: built kube-apiserver does not run" >&2; exit 1; }

if [[ -e "$ASSETS" ]]; then
	# A partial directory from an older layout: replace it whole.
	rm -rf "$ASSETS.old" && mv "$ASSETS" "$ASSETS.old" && rm -rf "$ASSETS.old"
fi
chmod 755 "$WORK"
mv "$WORK" "$ASSETS"
trap - EXIT
echo "install-envtest: built in $(( $(date +%s) - start ))s"
echo "$ASSETS"
