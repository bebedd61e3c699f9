# bench.mk: tether next to the reference platform's backup method.
# Included by the top-level Makefile.
#
#   make bench-compare   generates the reference workspace, starts MinIO on
#                        127.0.0.1, measures both methods (per-cycle CPU, wall,
#                        bytes, peak RSS; restore; data-loss windows) and
#                        rewrites docs/benchmarks.md and docs/benchmarks.png.
#                        Includes a local-mode chaos run (COMPARE_CHAOS_N kills
#                        of the runner) for the recovery time. ~15 minutes on
#                        2 cores. Smaller runs for development:
#                        make bench-compare COMPARE_CHAOS_N=2 COMPARE_FLAGS='-scale 0.05 -runs 2 -kills 4 -baseline-kills 3'

COMPARE_FLAGS ?=
COMPARE_CHAOS_N ?= 20

# bench/compare's test of the baseline script runs rclone in `make test` too.
TEST_DEPS += rclone

.PHONY: bench-compare rclone

rclone:
	TETHER_CACHE_DIR=$(CACHE) hack/install-rclone.sh >/dev/null

bench-compare: build claude-cli rclone minio
	$(GO) run ./bench/compare -tether $(BIN) -chaos $(COMPARE_CHAOS_N) $(COMPARE_FLAGS)
