# tether: every target a developer or CI needs. Tools and test dependencies are
# built or installed by hack/ scripts into $(CACHE), never into the repo.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

CACHE ?= $(HOME)/.cache/tether
export CACHE
# Programs the hack/ scripts install unversioned (rclone) are found here
# first, by the tests and by the scripts they run.
export PATH := $(CACHE)/bin:$(PATH)
GO ?= go
BIN := bin/tether
STATICCHECK_VERSION := v0.8.2

# Fragments in mk/ add their install targets to TEST_DEPS and their code
# generators to GENERATE_TARGETS.
TEST_DEPS :=
GENERATE_TARGETS :=
include $(wildcard mk/*.mk)

.PHONY: build test test-unit lint vet staticcheck generate check-generated bench demo chaos clean

# Static (no cgo) and stripped: the session pod copies bin/tether into the
# user's agent image, which may have no glibc or another one; and a smaller
# binary keeps the sync sidecar's resident pages down (35 vs 38 MiB idle on
# 20k files, bench/syncidle).
BUILD_FLAGS := -trimpath -ldflags '-s -w'

build:
	CGO_ENABLED=0 $(GO) build $(BUILD_FLAGS) -o $(BIN) ./cmd/tether
	CGO_ENABLED=0 $(GO) build $(BUILD_FLAGS) -o $(dir $(BIN))tether-operator ./cmd/tether-operator

## test: everything CI runs: generated code up to date, vet, staticcheck, all tests with -race,
## then every fuzz target for a short time (mk/fuzz.mk). The fault campaign (test/faults)
## runs on its own after the rest: it checks a 5 s data-loss window in wall-clock time,
## which a machine busy with the other packages' tests would measure, not tether.
TIMED_PKGS := ./test/faults
test: $(TEST_DEPS) check-generated lint
	$(GO) test -race -count=1 -timeout 45m $$($(GO) list ./... | grep -v -x -F -e $$($(GO) list $(TIMED_PKGS)))
	$(GO) test -race -count=1 -timeout 20m $(TIMED_PKGS)
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME_TEST)

## test-unit: the fast tests only (no external servers).
test-unit:
	$(GO) test -short ./...

lint: vet staticcheck

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then \
		echo "not gofmt-formatted (run gofmt -w):"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags tether_gcs,tether_azblob ./internal/store/

staticcheck: $(CACHE)/bin/staticcheck-$(STATICCHECK_VERSION)
	$(CACHE)/bin/staticcheck-$(STATICCHECK_VERSION) ./...

$(CACHE)/bin/staticcheck-$(STATICCHECK_VERSION):
	hack/install-go-tool.sh honnef.co/go/tools/cmd/staticcheck $(STATICCHECK_VERSION) $@

## generate: every generated file (deepcopy, CRD YAML, RBAC).
generate: $(GENERATE_TARGETS)

## check-generated: fails when generated files differ from what `make generate` produces.
check-generated: generate
	@if [ -n "$$(git status --porcelain -- api config charts 2>/dev/null)" ]; then \
		echo "generated files are out of date; run 'make generate' and commit:"; \
		git status --porcelain -- api config charts; git diff --stat -- api config charts; exit 1; fi

## bench: benchmarks, printed as tables of ratios against a baseline measured in the
## same run; bench-compare (mk/bench.mk) measures tether against the reference
## platform's method, data-loss windows included, and rewrites docs/benchmarks.md.
bench: $(TEST_DEPS) build
	$(GO) run ./bench/snapshotbench
	@echo
	$(GO) run ./bench/syncidle -tether $(BIN)
	@echo
	$(GO) test -run '^$$' -bench . -benchtime 200x ./internal/runner ./internal/agent
	@echo
	$(MAKE) bench-compare

## demo: the main job, on the embedded default store: a real Claude Code CLI
## killed by a real kernel OOM mid-turn comes back resumed, twice (workspace
## intact, then restored from the store alone). See demo-run in mk/local.mk.
demo: demo-run

clean:
	rm -rf bin
