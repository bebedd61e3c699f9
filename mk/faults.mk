# faults.mk: the fault campaign (test/faults). Included by the top-level Makefile.
#
#   make faults   FAULTS_DURATION (30m) of random faults against a real MinIO
#                 (killed and restarted; latency, 5xx bursts and lost acks from
#                 a proxy) and a file:// store (unwritable, full), with full
#                 workspace disks and SIGSTOPs of the sync, while a writer
#                 writes; prints the table (faults by kind, recovery p50/p99,
#                 writes lost beyond the window) and rewrites docs/faults.md.
#                 Needs root (an unprivileged sync user, tmpfs mounts).
#                 A shorter run for development, report elsewhere:
#                 make faults FAULTS_DURATION=4m FAULTS_REPORT=/tmp/faults.md
#
# The short version (TestOutageRecovery, TestFaultMix) runs in `make test`;
# every outage case (3 s, 30 s and 120 s, each of the three ways):
#   FAULTS_LONG=1 go test -run TestOutageRecovery -v ./test/faults/

FAULTS_DURATION ?= 30m
FAULTS_REPORT ?= $(CURDIR)/docs/faults.md
FAULTS_TIMEOUT ?= 2h

.PHONY: faults

faults: build minio
	TETHER_BIN=$(CURDIR)/$(BIN) FAULTS_DURATION=$(FAULTS_DURATION) FAULTS_REPORT=$(FAULTS_REPORT) \
		$(GO) test -count=1 -timeout $(FAULTS_TIMEOUT) -run '^TestCampaign$$' -v ./test/faults/
