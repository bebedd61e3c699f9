# fuzz.mk: every fuzz target (hack/fuzz.sh). Included by the top-level Makefile.
#
#   make fuzz                  each target for FUZZTIME (10s), a table at the end
#   make fuzz FUZZTIME=10m     the long run a decoder change needs before it lands
#
# `make test` runs each target for FUZZTIME_TEST (10s) after the tests.

FUZZTIME ?= 10s
FUZZTIME_TEST ?= 10s

.PHONY: fuzz

fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) hack/fuzz.sh
