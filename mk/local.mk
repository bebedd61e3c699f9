# local.mk: the one-machine targets of `tether run` (internal/local, test/e2e,
# test/chaos). Included by the top-level Makefile.
#
#   make demo-run   the demo, twice: with the local workspace intact, then with
#                   --fresh-workspace (everything restored from the store).
#                   Installs the pinned Claude Code CLI into $(CACHE) if missing.
#   make chaos      a scripted multi-turn session under CHAOS_N random SIGKILLs
#                   of the runner; prints the invariant table (CI: small N).

CHAOS_N ?= 20

.PHONY: demo-run chaos

demo-run: build claude-cli
	$(BIN) demo
	$(BIN) demo --fresh-workspace

chaos: build claude-cli
	TETHER_BIN=$(CURDIR)/$(BIN) CHAOS_N=$(CHAOS_N) $(GO) test -count=1 -timeout 120m -run '^TestChaos$$' -v ./test/chaos/
