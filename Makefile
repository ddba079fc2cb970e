# TestMesh — build, test and run targets. `make help` lists them.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

CARGO ?= cargo
GO ?= go
# The machine's Go must be 1.26.x: Go 1.27's default jsonv2 breaks kube-apiserver's OpenAPI.
export GOTOOLCHAIN := local
export GOFLAGS := -mod=mod

ASSETS := target/test-assets
# Point TESTMESH_TEST_ASSETS at an existing directory of kube-apiserver,
# kube-controller-manager and kubectl (e.g. from setup-envtest) to skip the build.
TESTMESH_TEST_ASSETS ?= $(CURDIR)/$(ASSETS)/bin
export TESTMESH_TEST_ASSETS
KUBE_BINARIES := kube-apiserver kube-controller-manager kubectl
KUBE_VERSION := $(shell sed -n 's|^\tk8s.io/kubernetes \(v[0-9.]*\).*|\1|p' tests/assets/go.mod)
KUBE_MINOR := $(word 2,$(subst ., ,$(KUBE_VERSION)))
# Stamp the release into the binaries, as Kubernetes' own build does (`kubectl version`).
KUBE_LDFLAGS := -s -w $(foreach pkg,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
	-X $(pkg).gitVersion=$(KUBE_VERSION) -X $(pkg).gitMajor=1 -X $(pkg).gitMinor=$(KUBE_MINOR) -X $(pkg).gitTreeState=clean)
# Third-party CRDs the tests install, taken from the projects' own Go modules.
ARGOCD_MODULE := github.com/argoproj/argo-cd/v3@v3.5.7
FLUX_KUSTOMIZE_MODULE := github.com/fluxcd/kustomize-controller@v1.9.6

.PHONY: help
help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: run
run: ## Run the operator against the cluster of the current kubeconfig (ARGS= adds flags).
	$(CARGO) run -q --bin testmesh -- run $(ARGS)

.PHONY: dev-cluster
dev-cluster: test-assets ## A local control plane with TestMesh's and Argo CD's CRDs (Ctrl-C stops it).
	$(CARGO) run -q -p testmesh-testenv --bin testmesh-dev-cluster -- crds/*.yaml $(ASSETS)/crds/*.yaml

.PHONY: test
# Integration tests mostly wait on the control plane, so more of them run at once than
# there are cores.
test: lint check-crds test-assets browser-tools ## Lint, unit tests, CRD freshness, real-control-plane tests.
	$(CARGO) test --workspace --lib --bins --tests -- --test-threads=12

.PHONY: bench
bench: test-assets ## Measure reaction times on the real control plane; writes target/bench/lifecycle.json.
	$(CARGO) bench --bench lifecycle

.PHONY: lint
lint: ## cargo fmt --check and clippy with warnings denied.
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: crds
crds: ## Regenerate crds/ from the Rust types.
	$(CARGO) run -q --bin testmesh -- crds --output-dir crds

.PHONY: check-crds
check-crds: ## Fail if crds/ differs from what the Rust types generate.
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(CARGO) run -q --bin testmesh -- crds --output-dir "$$tmp" && \
	diff -ru crds "$$tmp" || { echo "crds/ is stale: run 'make crds' and commit the result" >&2; exit 1; }

.PHONY: test-assets
test-assets: $(addprefix $(TESTMESH_TEST_ASSETS)/,$(KUBE_BINARIES)) $(ASSETS)/crds/.stamp ## Build the control-plane binaries and fetch third-party CRDs (cached).

$(CURDIR)/$(ASSETS)/bin/%: tests/assets/go.mod tests/assets/go.sum
	@mkdir -p $(@D)
	cd tests/assets && $(GO) build -trimpath -ldflags='$(KUBE_LDFLAGS)' -o $@ k8s.io/kubernetes/cmd/$*

$(ASSETS)/crds/.stamp: Makefile
	@mkdir -p $(@D)
	argocd=$$(cd /tmp && $(GO) mod download -json $(ARGOCD_MODULE) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p') && \
	flux=$$(cd /tmp && $(GO) mod download -json $(FLUX_KUSTOMIZE_MODULE) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p') && \
	test -n "$$argocd" && test -n "$$flux" && \
	install -m 0644 "$$argocd/manifests/crds/application-crd.yaml" $(@D)/argocd-application.yaml && \
	install -m 0644 "$$argocd/manifests/crds/applicationset-crd.yaml" $(@D)/argocd-applicationset.yaml && \
	install -m 0644 "$$flux/config/crd/bases/kustomize.toolkit.fluxcd.io_kustomizations.yaml" $(@D)/flux-kustomization.yaml
	@touch $@

# The dashboard's browser test drives Debian's Chromium with playwright-core (no browser
# download). npm ci runs only when node_modules is missing or older than the lockfile.
BROWSER_DIR := tests/browser
BROWSER_STAMP := $(BROWSER_DIR)/node_modules/.package-lock.json
CHROMIUM ?= /usr/bin/chromium

.PHONY: browser-tools
browser-tools: $(BROWSER_STAMP) ## Install the dashboard's browser test driver (cached) and check for Chromium.
	@test -x $(CHROMIUM) || { echo "$(CHROMIUM) not found: apt-get install chromium, or set CHROMIUM" >&2; exit 1; }

$(BROWSER_STAMP): $(BROWSER_DIR)/package-lock.json $(BROWSER_DIR)/package.json
	npm ci --prefix $(BROWSER_DIR) --no-audit --no-fund
	@touch $@

.PHONY: clean-test-assets
clean-test-assets: ## Remove the built control-plane binaries and run directories.
	rm -rf $(ASSETS) target/testenv
