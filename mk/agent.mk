# agent.mk: test dependencies of internal/agent and internal/runner.
# The real Claude Code CLI, pinned, installed from npm into $(CACHE)/npm, and
# the official AG-UI client the runner's stream is checked with.

TEST_DEPS += claude-cli agui-client

.PHONY: claude-cli agui-client
claude-cli:
	TETHER_CACHE_DIR=$(CACHE) hack/install-claude.sh >/dev/null

agui-client:
	TETHER_CACHE_DIR=$(CACHE) hack/install-agui.sh >/dev/null
