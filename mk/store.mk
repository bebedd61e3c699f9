# store.mk: test dependencies of internal/store and everything tested on its
# backend matrix: a real MinIO server, built from the Go module proxy, pinned.

TEST_DEPS += minio

.PHONY: minio
minio:
	TETHER_CACHE_DIR=$(CACHE) hack/install-minio.sh >/dev/null
