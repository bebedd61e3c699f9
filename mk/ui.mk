# ui.mk: test dependencies of internal/ui's browser test. Debian's chromium,
# unpacked into $(CACHE)/debs with a wrapper at $(CACHE)/bin/chromium (no
# system-wide install), driven headless by chromedp.

TEST_DEPS += chromium

.PHONY: chromium
chromium:
	TETHER_CACHE_DIR=$(CACHE) hack/install-chromium.sh >/dev/null
