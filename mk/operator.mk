# Operator targets (included by the top-level Makefile with `include mk/*.mk`).
#
#   make envtest            build kube-apiserver + etcd for the operator tests (cached)
#   make generate-operator  regenerate deepcopy, CRD and RBAC from api/ and internal/operator/
#   make deploy             render config/default (CRD, RBAC, manager) to stdout; pipe to kubectl apply -f -
#   make helm-template      lint and render charts/tether-operator to stdout
#
# Tools are built from pinned separate modules under hack/tools into $(CACHE)/bin,
# never added to tether's own go.mod.

CACHE ?= $(HOME)/.cache/tether
CONTROLLER_GEN_VERSION := v0.23.0
CONTROLLER_GEN := $(CACHE)/bin/controller-gen-$(CONTROLLER_GEN_VERSION)
KUSTOMIZE_VERSION := v5.8.1
KUSTOMIZE := $(CACHE)/bin/kustomize-$(KUSTOMIZE_VERSION)
HELM_VERSION := v3.22.0
HELM := $(CACHE)/bin/helm-$(HELM_VERSION)

TEST_DEPS += envtest $(HELM)
GENERATE_TARGETS += generate-operator

.PHONY: envtest generate-operator deploy helm-template

envtest:
	TETHER_CACHE_DIR=$(CACHE) hack/install-envtest.sh

# The version is in the file name, so bumping the pin rebuilds.
$(CONTROLLER_GEN): hack/tools/controller-gen/go.mod
	@mkdir -p $(CACHE)/bin
	cd hack/tools/controller-gen && GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 \
		go build -trimpath -o $@.tmp sigs.k8s.io/controller-tools/cmd/controller-gen && mv -f $@.tmp $@

$(KUSTOMIZE): hack/tools/kustomize/go.mod
	@mkdir -p $(CACHE)/bin
	cd hack/tools/kustomize && GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 \
		go build -trimpath -o $@.tmp sigs.k8s.io/kustomize/kustomize/v5 && mv -f $@.tmp $@

$(HELM): hack/tools/helm/go.mod
	@mkdir -p $(CACHE)/bin
	cd hack/tools/helm && GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 \
		go build -trimpath -o $@.tmp helm.sh/helm/v3/cmd/helm && mv -f $@.tmp $@

generate-operator: $(CONTROLLER_GEN)
	$(CONTROLLER_GEN) object paths=./api/...
	$(CONTROLLER_GEN) crd:allowDangerousTypes=true paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=tether-operator paths=./internal/operator/... output:rbac:artifacts:config=config/rbac
	@# The Helm chart ships the same CRD and rules; copies, so drift shows in git diff.
	cp config/crd/bases/tether.dev_agenticsessions.yaml charts/tether-operator/crds/
	cp config/rbac/role.yaml charts/tether-operator/files/role.yaml

deploy: $(KUSTOMIZE)
	$(KUSTOMIZE) build config/default

helm-template: $(HELM)
	$(HELM) lint charts/tether-operator >&2
	$(HELM) template tether charts/tether-operator --namespace tether-system --include-crds
