# agent.mk: test dependencies of internal/agent and internal/runner.
# The real Claude Code CLI, pinned, installed from npm into $(CACHE)/npm.

TEST_DEPS += claude-cli

.PHONY: claude-cli
claude-cli:
	TETHER_CACHE_DIR=$(CACHE) hack/install-claude.sh >/dev/null
