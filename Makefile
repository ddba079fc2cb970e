# TestMesh — build, test and run targets. `make help` lists them.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

CARGO ?= cargo
GO ?= go
# The machine's Go must be 1.26.x: Go 1.27's default jsonv2 breaks kube-apiserver's OpenAPI.
export GOTOOLCHAIN := local
export GOFLAGS := -mod=mod

ASSETS := target/test-assets
# Tools built from their Go modules, cached per version by stamp files.
TOOLS := $(CURDIR)/target/tools
TOOLS_BIN := $(TOOLS)/bin
# Point TESTMESH_TEST_ASSETS at an existing directory of kube-apiserver,
# kube-controller-manager, kube-scheduler and kubectl (e.g. from setup-envtest) to skip
# the build.
TESTMESH_TEST_ASSETS ?= $(CURDIR)/$(ASSETS)/bin
export TESTMESH_TEST_ASSETS
KUBE_BINARIES := kube-apiserver kube-controller-manager kube-scheduler kubectl
KUBE_VERSION := $(shell sed -n 's|^\tk8s.io/kubernetes \(v[0-9.]*\).*|\1|p' tests/assets/go.mod)
KUBE_MINOR := $(word 2,$(subst ., ,$(KUBE_VERSION)))
# Stamp the release into the binaries, as Kubernetes' own build does (`kubectl version`).
KUBE_LDFLAGS := -s -w $(foreach pkg,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
	-X $(pkg).gitVersion=$(KUBE_VERSION) -X $(pkg).gitMajor=1 -X $(pkg).gitMinor=$(KUBE_MINOR) -X $(pkg).gitTreeState=clean)
# Third-party CRDs the tests install, taken from the projects' own Go modules. Argo CD's
# are those of the release the GitOps tests run (see gitops-tools).
ARGOCD_VERSION := v3.2.11
ARGOCD_MODULE := github.com/argoproj/argo-cd/v3@$(ARGOCD_VERSION)
# Flux's are those of the controllers the Flux tests run (see gitops-tools).
FLUX_KUSTOMIZE_VERSION := v1.9.6
FLUX_SOURCE_VERSION := v1.9.3
FLUX_KUSTOMIZE_MODULE := github.com/fluxcd/kustomize-controller@$(FLUX_KUSTOMIZE_VERSION)
FLUX_SOURCE_MODULE := github.com/fluxcd/source-controller@$(FLUX_SOURCE_VERSION)
# The control plane's etcd and the GitOps tests' kwok (see gitops-tools).
ETCD_MODULE := go.etcd.io/etcd/server/v3
ETCD_VERSION := v3.6.17
KWOK_VERSION := v0.8.0

.PHONY: help
help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# `make run` uses the cluster the operator itself would (kube-rs's order): KUBECONFIG,
# else ~/.kube/config, else the in-cluster service account. With none of them, or with
# LOCAL=1, it starts a local one for the operator: the test control plane with kwok and a
# real Argo CD, a Git repository holding the example services, and the examples applied
# (testmesh-dev-cluster --examples); Ctrl-C stops it all.
CONFIGURED_CLUSTER := $(if $(KUBECONFIG),KUBECONFIG=$(KUBECONFIG),$(if $(wildcard $(HOME)/.kube/config),~/.kube/config,$(if $(KUBERNETES_SERVICE_HOST),the in-cluster service account)))
RUN_CLUSTER := $(if $(filter 1,$(LOCAL)),,$(CONFIGURED_CLUSTER))

.PHONY: run
run: ## Run the operator on your cluster (KUBECONFIG, ~/.kube/config, in-cluster); if none, or LOCAL=1, on a local one with Argo CD and the examples. ARGS= adds flags.
ifeq ($(RUN_CLUSTER),)
# Of the GitOps tools, only Argo CD and kwok.
run: test-assets $(TOOLS_BIN)/.argocd-$(ARGOCD_VERSION) $(TOOLS_BIN)/.kwok-$(KWOK_VERSION)
	@echo "make run: $(if $(CONFIGURED_CLUSTER),LOCAL=1,no cluster configured (KUBECONFIG, ~/.kube/config, in-cluster)): starting a local one with Argo CD and the examples"
	$(CARGO) build -q --workspace --bins
	$${CARGO_TARGET_DIR:-target}/debug/testmesh-dev-cluster --examples -- $(ARGS)
else
run:
	@echo "make run: the cluster of $(RUN_CLUSTER)$$(context=$$(kubectl config current-context 2>/dev/null) && echo ", context $$context") (LOCAL=1: a local one instead)"
	$(if $(findstring /target/testenv/,$(KUBECONFIG)),@echo "make run: that is the local cluster of an earlier make run or make dev-cluster (unset KUBECONFIG when it has stopped)")
	$(CARGO) run -q --bin testmesh -- run $(ARGS)
endif

.PHONY: dev-cluster
dev-cluster: test-assets gitops-tools ## A local control plane with TestMesh's CRDs, fake nodes (kwok) and a real Argo CD (Ctrl-C stops it).
	$(CARGO) run -q -p testmesh-testenv --bin testmesh-dev-cluster -- --gitops crds/*.yaml $(ASSETS)/crds/*.yaml tests/assets/gitops-namespaces.yaml

.PHONY: test
# Integration tests mostly wait on the control plane, so more of them run at once than
# there are cores.
test: lint check-crds check-chart test-assets gitops-tools fuzz-tools browser-tools ## Lint, unit tests, CRD and chart checks, real-control-plane tests (with the API fuzzer and the dashboard's browser test).
	$(CARGO) test --workspace --lib --bins --tests -- --test-threads=12

.PHONY: bench
# chart-tools: the lifecycle runs with the chart's admission policy, rendered by helm;
# gitops-tools: one part goes through the real Argo CD and kwok. TESTMESH_BENCH_ONLY=argocd
# runs that part alone, TESTMESH_BENCH_SCALE=0.1 shrinks every part (see README).
bench: test-assets gitops-tools peer-tools chart-tools ## The figures of issues 8 and 14 on the real control plane (through the real Argo CD, beside the peer TTL cleaner); writes target/bench/lifecycle.json.
	$(CARGO) bench --bench lifecycle

.PHONY: soak
soak: test-assets gitops-tools ## The long fault soak on the real Argo CD (200 lifecycles, 50 faults of each kind; SOAK_SEED= replays one); make test runs a short one.
	SOAK_LIFECYCLES=$${SOAK_LIFECYCLES:-200} SOAK_FAULTS_PER_KIND=$${SOAK_FAULTS_PER_KIND:-50} \
		$(CARGO) test --test integration -- soak:: --nocapture

.PHONY: bench-peer
bench-peer: test-assets peer-tools ## The peer TTL cleaner alone on 1,000 expiring namespaces; writes target/bench/peer.json.
	$(CARGO) bench --bench peer

.PHONY: lint
lint: ## cargo fmt --check, clippy with warnings denied, and the API docs (no broken links).
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

.PHONY: crds
crds: ## Regenerate crds/ from the Rust types (and the chart's copy).
	$(CARGO) run -q --bin testmesh -- crds --output-dir crds
	$(MAKE) chart-crds

.PHONY: check-crds
check-crds: ## Fail if crds/ differs from what the Rust types generate.
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(CARGO) run -q --bin testmesh -- crds --output-dir "$$tmp" && \
	diff -ru crds "$$tmp" || { echo "crds/ is stale: run 'make crds' and commit the result" >&2; exit 1; }

.PHONY: test-assets
test-assets: $(addprefix $(TESTMESH_TEST_ASSETS)/,$(KUBE_BINARIES)) $(TOOLS_BIN)/.etcd-$(ETCD_VERSION) $(ASSETS)/crds/.stamp ## Build the control-plane binaries (etcd too) and fetch third-party CRDs (cached).

$(CURDIR)/$(ASSETS)/bin/%: tests/assets/go.mod tests/assets/go.sum
	@mkdir -p $(@D)
	cd tests/assets && $(GO) build -trimpath -ldflags='$(KUBE_LDFLAGS)' -o $@ k8s.io/kubernetes/cmd/$*

$(ASSETS)/crds/.stamp: Makefile
	@mkdir -p $(@D)
	argocd=$$(cd /tmp && $(GO) mod download -json $(ARGOCD_MODULE) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p') && \
	flux=$$(cd /tmp && $(GO) mod download -json $(FLUX_KUSTOMIZE_MODULE) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p') && \
	flux_source=$$(cd /tmp && $(GO) mod download -json $(FLUX_SOURCE_MODULE) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p') && \
	test -n "$$argocd" && test -n "$$flux" && test -n "$$flux_source" && \
	install -m 0644 "$$argocd/manifests/crds/application-crd.yaml" $(@D)/argocd-application.yaml && \
	install -m 0644 "$$argocd/manifests/crds/applicationset-crd.yaml" $(@D)/argocd-applicationset.yaml && \
	install -m 0644 "$$argocd/manifests/crds/appproject-crd.yaml" $(@D)/argocd-appproject.yaml && \
	install -m 0644 "$$flux/config/crd/bases/kustomize.toolkit.fluxcd.io_kustomizations.yaml" $(@D)/flux-kustomization.yaml && \
	for crd in "$$flux_source"/config/crd/bases/source.toolkit.fluxcd.io_*.yaml; do \
		install -m 0644 "$$crd" $(@D)/flux-source-$${crd##*_}; \
	done
	@touch $@

# schemathesis fuzzes the REST API in the integration tests. Python 3.11's ast module
# crashes its coverage phase ("AST constructor recursion depth mismatch"), so a newer
# Python is preferred when the machine has one.
SCHEMATHESIS_VERSION := 4.32.5
FUZZ_VENV := target/tools/schemathesis
FUZZ_PYTHON ?= $(firstword $(wildcard /usr/bin/python3.1[2-9] $(HOME)/.pyenv/versions/3.1[2-9]*/bin/python3) python3)

.PHONY: fuzz-tools
fuzz-tools: $(FUZZ_VENV)/.installed-$(SCHEMATHESIS_VERSION) ## Install schemathesis (cached) for the API fuzz test.

$(FUZZ_VENV)/.installed-$(SCHEMATHESIS_VERSION):
	rm -rf $(FUZZ_VENV)
	$(FUZZ_PYTHON) -m venv $(FUZZ_VENV)
	$(FUZZ_VENV)/bin/pip install -q --disable-pip-version-check schemathesis==$(SCHEMATHESIS_VERSION)
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

# --- etcd, Argo CD, Flux and kwok -------------------------------------------------------
# The test control plane runs etcd 3.6: Debian's 3.4 lacks the watch progress requests
# client-go ≥ 1.35 informers rely on, and they then catch up only by relisting (kwok took
# 13 s instead of 1.5 s to make pods ready). The GitOps tests run a real Argo CD (one
# binary: the component is chosen by ARGOCD_BINARY_NAME or argv[0]) and kwok, which
# plays the kubelet for fake nodes. Argo CD 3.2 is the newest release that builds from
# the Go module proxy alone (3.3+ need a nested gitops-engine module the proxy lacks).
# etcd, Argo CD and Flux have replace directives, so hack/go-build-module.sh builds them.
ARGOCD_LDFLAGS := -s -w -X github.com/argoproj/argo-cd/v3/common.version=$(ARGOCD_VERSION:v%=%)

GITOPS_TOOLS := .argocd-$(ARGOCD_VERSION) .kwok-$(KWOK_VERSION) \
	.source-controller-$(FLUX_SOURCE_VERSION) .kustomize-controller-$(FLUX_KUSTOMIZE_VERSION)

.PHONY: gitops-tools
gitops-tools: $(addprefix $(TOOLS_BIN)/,$(GITOPS_TOOLS)) ## Build Argo CD, Flux and kwok for the GitOps tests (cached; etcd comes with test-assets).

$(TOOLS_BIN)/.etcd-$(ETCD_VERSION):
	@mkdir -p $(@D)
	hack/go-build-module.sh $(ETCD_MODULE) $(ETCD_VERSION) $(ETCD_MODULE) $(TOOLS_BIN)/etcd
	@touch $@

$(TOOLS_BIN)/.argocd-$(ARGOCD_VERSION):
	@mkdir -p $(@D)
	hack/go-build-module.sh github.com/argoproj/argo-cd/v3 $(ARGOCD_VERSION) github.com/argoproj/argo-cd/v3/cmd \
		$(TOOLS_BIN)/argocd '$(ARGOCD_LDFLAGS)'
	@touch $@

$(TOOLS_BIN)/.kwok-$(KWOK_VERSION):
	@mkdir -p $(@D)
	cd /tmp && CGO_ENABLED=0 GOBIN=$(TOOLS_BIN) $(GO) install -trimpath -ldflags='-s -w' sigs.k8s.io/kwok/cmd/kwok@$(KWOK_VERSION)
	@touch $@

# Flux: source-controller and kustomize-controller, each a module with replace lines.
# kustomize-controller v1.9.6 is the newest release Go 1.26 builds (v1.10 wants Go 1.27);
# source-controller v1.9.3 the newest the Go module proxy serves every dependency of
# (v1.9.4 and later need github.com/fluxcd/pkg/artifact v0.18.2+, refused with 403).
$(TOOLS_BIN)/.source-controller-$(FLUX_SOURCE_VERSION):
	@mkdir -p $(@D)
	hack/go-build-module.sh github.com/fluxcd/source-controller $(FLUX_SOURCE_VERSION) \
		github.com/fluxcd/source-controller $(TOOLS_BIN)/source-controller
	@touch $@

$(TOOLS_BIN)/.kustomize-controller-$(FLUX_KUSTOMIZE_VERSION):
	@mkdir -p $(@D)
	hack/go-build-module.sh github.com/fluxcd/kustomize-controller $(FLUX_KUSTOMIZE_VERSION) \
		github.com/fluxcd/kustomize-controller $(TOOLS_BIN)/kustomize-controller
	@touch $@

# --- Helm chart -------------------------------------------------------------------------
# Tools are built from their Go modules into target/tools/bin (cached per version).
# kubeconform validates against JSON schemas made offline from Kubernetes' OpenAPI spec
# (the same release as the test control plane) and from the CRDs, by
# hack/kube-json-schemas.py.

CHART := charts/testmesh
KUBE_SCHEMAS := $(TOOLS)/kube-schemas
HELM := $(TOOLS_BIN)/helm
KUBECONFORM := $(TOOLS_BIN)/kubeconform
GOJQ := $(TOOLS_BIN)/gojq
HELM_VERSION := v3.22.0
KUBECONFORM_VERSION := v0.8.0
GOJQ_VERSION := v0.12.19
PROMETHEUS_OPERATOR_MODULE := github.com/prometheus-operator/prometheus-operator@v0.85.0
# Like Helm's release build: its version, and the Kubernetes release `helm template`
# and `helm lint` assume (the test control plane's).
HELM_LDFLAGS := -s -w -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	$(foreach pkg,lint/rules chartutil,-X helm.sh/helm/v3/pkg/$(pkg).k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/$(pkg).k8sVersionMinor=$(KUBE_MINOR))
# Renders with the optional objects on, so they are linted and validated too.
CHART_ALL_ON := --set serviceMonitor.enabled=true --set prometheusRule.enabled=true \
	--set networkPolicy.enabled=true
# What the chart asks .Capabilities about and the test control plane's release serves:
# `helm template` knows group/versions by itself, but not kinds.
CHART_API_VERSIONS := --api-versions admissionregistration.k8s.io/v1/MutatingAdmissionPolicy
KUBECONFORM_ARGS := -strict -summary -schema-location '$(KUBE_SCHEMAS)/{{ .ResourceKind }}{{ .KindSuffix }}.json'

.PHONY: chart-tools
chart-tools: $(TOOLS_BIN)/.helm-$(HELM_VERSION) $(TOOLS_BIN)/.kubeconform-$(KUBECONFORM_VERSION) $(KUBE_SCHEMAS)/.stamp ## Build helm and kubeconform, make the JSON schemas (cached).

$(TOOLS_BIN)/.helm-$(HELM_VERSION):
	@mkdir -p $(@D)
	cd /tmp && CGO_ENABLED=0 GOBIN=$(TOOLS_BIN) $(GO) install -trimpath -ldflags='$(HELM_LDFLAGS)' helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	@touch $@

$(TOOLS_BIN)/.kubeconform-$(KUBECONFORM_VERSION):
	@mkdir -p $(@D)
	cd /tmp && CGO_ENABLED=0 GOBIN=$(TOOLS_BIN) $(GO) install -trimpath -ldflags='-s -w' github.com/yannh/kubeconform/cmd/kubeconform@$(KUBECONFORM_VERSION)
	@touch $@

$(TOOLS_BIN)/.gojq-$(GOJQ_VERSION):
	@mkdir -p $(@D)
	cd /tmp && CGO_ENABLED=0 GOBIN=$(TOOLS_BIN) $(GO) install -trimpath -ldflags='-s -w' github.com/itchyny/gojq/cmd/gojq@$(GOJQ_VERSION)
	@touch $@

# Kubernetes' own kinds from its OpenAPI spec; ours, ServiceMonitor and PrometheusRule from
# their CRDs
# (gojq turns the YAML into JSON, as Python's standard library reads no YAML).
$(KUBE_SCHEMAS)/.stamp: Makefile hack/kube-json-schemas.py tests/assets/go.mod $(wildcard crds/*.yaml) $(TOOLS_BIN)/.gojq-$(GOJQ_VERSION)
	kubernetes=$$(cd /tmp && $(GO) mod download -json k8s.io/kubernetes@$(KUBE_VERSION) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p') && \
	prometheus=$$(cd /tmp && $(GO) mod download -json $(PROMETHEUS_OPERATOR_MODULE) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p') && \
	test -n "$$kubernetes" && test -n "$$prometheus" && \
	rm -rf $(KUBE_SCHEMAS) && mkdir -p $(KUBE_SCHEMAS) && \
	$(GOJQ) --yaml-input -c . crds/*.yaml \
		"$$prometheus/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" \
		"$$prometheus/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml" \
		> $(TOOLS)/crds.jsonl && \
	python3 hack/kube-json-schemas.py --openapi "$$kubernetes/api/openapi-spec/swagger.json" \
		--crds $(TOOLS)/crds.jsonl --output $(KUBE_SCHEMAS)
	@touch $@

.PHONY: chart-crds
chart-crds: ## Copy crds/ into the chart (done by `make crds`).
	rm -f $(CHART)/crds/*.yaml
	install -m 0644 crds/*.yaml $(CHART)/crds/

.PHONY: check-chart
check-chart: chart-tools ## Lint the chart, validate what it renders, refuse misspelt values, CRD copy fresh.
	@diff -ru crds $(CHART)/crds || { echo "$(CHART)/crds is stale: run 'make chart-crds' and commit the result" >&2; exit 1; }
	$(HELM) lint --strict $(CHART)
	$(HELM) lint --strict $(CHART) $(CHART_ALL_ON)
	$(HELM) template testmesh $(CHART) --namespace testmesh-system --include-crds $(CHART_API_VERSIONS) \
		| $(KUBECONFORM) $(KUBECONFORM_ARGS)
	$(HELM) template testmesh $(CHART) --namespace testmesh-system --include-crds $(CHART_ALL_ON) \
		$(CHART_API_VERSIONS) --set replicaCount=1 --set operator.leaderElection.enabled=false \
		--set operator.watchNamespace=team-a | $(KUBECONFORM) $(KUBECONFORM_ARGS)
	@if $(HELM) template testmesh $(CHART) | grep -q '^kind: MutatingAdmissionPolicy'; then \
		echo "the admission policy is rendered for an API server that does not serve it" >&2; exit 1; \
	fi
	@if out=$$($(HELM) template testmesh $(CHART) --set replicaCont=3 2>&1); then \
		echo "a misspelt value (replicaCont) was accepted" >&2; exit 1; \
	else \
		echo "$$out" | grep -q "additional properties 'replicaCont' not allowed" || { echo "$$out" >&2; exit 1; }; \
		echo "misspelt value refused: $$(echo "$$out" | grep replicaCont | head -1)"; \
	fi

# --- Peer for the side-by-side benchmark ------------------------------------------------
# Kyverno's cleanup controller deletes what is labelled cleanup.kyverno.io/ttl; it is the
# TTL cleaner the Go module proxy serves here (TwiN's k8s-ttl-controller is not). Kyverno's
# go.mod has a replace directive, which `go install …@version` refuses, so
# hack/go-build-module.sh builds it. Its CRDs come from the same module. Nothing of it is
# committed.
PEER_MODULE := github.com/kyverno/kyverno
PEER_VERSION := v1.19.1

.PHONY: peer-tools
peer-tools: $(TOOLS_BIN)/.kyverno-cleanup-controller-$(PEER_VERSION) ## Build the benchmark's peer TTL cleaner and copy its CRDs (cached).

$(TOOLS_BIN)/.kyverno-cleanup-controller-$(PEER_VERSION):
	@mkdir -p $(@D)
	hack/go-build-module.sh $(PEER_MODULE) $(PEER_VERSION) $(PEER_MODULE)/cmd/cleanup-controller \
		$(TOOLS_BIN)/kyverno-cleanup-controller '-s -w -X $(PEER_MODULE)/pkg/version.BuildVersion=$(PEER_VERSION)'
	src=$$(cd /tmp && $(GO) mod download -json $(PEER_MODULE)@$(PEER_VERSION) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p') && \
	test -n "$$src" && \
	rm -rf $(TOOLS)/kyverno-crds && mkdir -p $(TOOLS)/kyverno-crds && \
	install -m 0644 "$$src"/config/crds/*/*.yaml $(TOOLS)/kyverno-crds/
	@touch $@

# --- Release artefacts (make dist) ------------------------------------------------------
# What a release publishes, into target/dist/: the testmesh binary (operator and CLI in
# one) for Linux amd64 and arm64, static (musl; nothing needed on the host), the packaged
# chart with its CRDs, an OCI image layout per architecture, and SHA-256 checksums. The
# Rust targets come from rustup (`rustup target add`, done here); the C and assembly in
# ring and psm need musl-gcc for amd64 and an aarch64 cross gcc, also the arm64 linker
# (Debian: apt-get install musl-tools gcc-aarch64-linux-gnu). The OCI layouts are made
# without a container engine by umoci (apt-get install umoci): the image the Dockerfile
# describes, from the same static binary. The release's version is Cargo.toml's; the
# chart's appVersion (the default image tag) must equal it.
DIST := target/dist
DIST_ARCHS := amd64 arm64
RELEASE_VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -1)
CHART_VERSION := $(shell sed -n 's/^version: *//p' $(CHART)/Chart.yaml)
CHART_APP_VERSION := $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$$/\1/p' $(CHART)/Chart.yaml)
RUST_TARGET_amd64 := x86_64-unknown-linux-musl
RUST_TARGET_arm64 := aarch64-unknown-linux-musl
UMOCI ?= umoci
QEMU_AARCH64 ?= qemu-aarch64

.PHONY: dist
dist: dist-binaries dist-chart dist-images ## Release artefacts in target/dist/: static Linux binaries (amd64, arm64), the chart package, OCI image layouts, SHA256SUMS.
	cd $(DIST) && sha256sum testmesh-$(RELEASE_VERSION)-linux-* testmesh-$(CHART_VERSION).tgz \
		$(foreach arch,$(DIST_ARCHS),testmesh-$(RELEASE_VERSION)-oci-$(arch).tar) > SHA256SUMS
	cd $(DIST) && sha256sum --quiet -c SHA256SUMS
	@ls -l $(DIST)

.PHONY: dist-binaries
dist-binaries: export CC_x86_64_unknown_linux_musl ?= musl-gcc
dist-binaries: export CC_aarch64_unknown_linux_musl ?= aarch64-linux-gnu-gcc
dist-binaries: export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER ?= aarch64-linux-gnu-gcc
dist-binaries:
	@test "$(CHART_APP_VERSION)" = "$(RELEASE_VERSION)" || { echo "$(CHART)/Chart.yaml appVersion $(CHART_APP_VERSION) is not the release's version $(RELEASE_VERSION) (Cargo.toml): the image tag follows appVersion" >&2; exit 1; }
	@for arch in $(DIST_ARCHS); do \
		case $$arch in amd64) tool="$$CC_x86_64_unknown_linux_musl";; arm64) tool="$$CC_aarch64_unknown_linux_musl";; esac; \
		command -v "$$tool" >/dev/null || { echo "$$tool not found: apt-get install musl-tools gcc-aarch64-linux-gnu (or set CC_<target>)" >&2; exit 1; }; \
	done
	rustup target add $(foreach arch,$(DIST_ARCHS),$(RUST_TARGET_$(arch)))
	@mkdir -p $(DIST)
	$(foreach arch,$(DIST_ARCHS),\
		$(CARGO) build --release --locked --bin testmesh --target $(RUST_TARGET_$(arch)) && \
		install -m 0755 $${CARGO_TARGET_DIR:-target}/$(RUST_TARGET_$(arch))/release/testmesh $(DIST)/testmesh-$(RELEASE_VERSION)-linux-$(arch) &&) true
	@# Static: no program interpreter, no shared library.
	@for binary in $(DIST)/testmesh-$(RELEASE_VERSION)-linux-*; do \
		if readelf -lW "$$binary" | grep -q 'INTERP' || readelf -dW "$$binary" | grep -q '(NEEDED)'; then \
			echo "$$binary is not static" >&2; exit 1; \
		fi; \
		echo "$$binary: static, $$(readelf -hW "$$binary" | sed -n 's/^ *Machine: *//p')"; \
	done
	@# Each starts and knows its version: arm64 under qemu-user when it is installed.
	@for arch in $(DIST_ARCHS); do \
		binary=$(DIST)/testmesh-$(RELEASE_VERSION)-linux-$$arch; \
		case $$arch in amd64) run=;; arm64) run=$(QEMU_AARCH64);; esac; \
		if [ -n "$$run" ] && ! command -v $$run >/dev/null; then \
			echo "$$binary: not run ($$run not found: apt-get install qemu-user)"; continue; \
		fi; \
		version=$$($$run $$binary --version) && test "$$version" = "testmesh $(RELEASE_VERSION)" \
			|| { echo "$$binary says '$$version', not 'testmesh $(RELEASE_VERSION)'" >&2; exit 1; }; \
		echo "$$binary --version: $$version"; \
	done

.PHONY: dist-chart
dist-chart: $(TOOLS_BIN)/.helm-$(HELM_VERSION) ## The chart as helm package makes it (CRDs included), into target/dist/.
	@diff -ru crds $(CHART)/crds >/dev/null || { echo "$(CHART)/crds is stale: run 'make chart-crds'" >&2; exit 1; }
	@mkdir -p $(DIST)
	$(HELM) package $(CHART) --destination $(DIST)
	@tar -tzf $(DIST)/testmesh-$(CHART_VERSION).tgz | grep -q '^testmesh/crds/testenvironments.testmesh.io.yaml$$' \
		|| { echo "the packaged chart has no CRDs" >&2; exit 1; }

# One OCI image layout per architecture (an image index with one image, tagged with the
# version), as the Dockerfile builds it: the static binary as /testmesh, CA roots (the
# host's Debian bundle), a passwd entry for the non-root user 65532, entrypoint
# `/testmesh run`. The amd64 image's binary is run from the unpacked image (`--version`)
# to prove it starts.
CA_CERTIFICATES ?= /etc/ssl/certs/ca-certificates.crt

.PHONY: dist-images
dist-images: dist-binaries
	@command -v $(UMOCI) >/dev/null || { echo "$(UMOCI) not found: apt-get install umoci (builds OCI images without a daemon)" >&2; exit 1; }
	@test -f $(CA_CERTIFICATES) || { echo "$(CA_CERTIFICATES) not found: apt-get install ca-certificates, or set CA_CERTIFICATES" >&2; exit 1; }
	@set -e; for arch in $(DIST_ARCHS); do \
		work=$$(mktemp -d); layout=$$work/layout; \
		$(UMOCI) init --layout $$layout; \
		$(UMOCI) new --image $$layout:$(RELEASE_VERSION); \
		$(UMOCI) unpack --image $$layout:$(RELEASE_VERSION) $$work/bundle >/dev/null; \
		install -m 0755 $(DIST)/testmesh-$(RELEASE_VERSION)-linux-$$arch $$work/bundle/rootfs/testmesh; \
		install -D -m 0644 $(CA_CERTIFICATES) $$work/bundle/rootfs/etc/ssl/certs/ca-certificates.crt; \
		printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > $$work/bundle/rootfs/etc/passwd; \
		printf 'root:x:0:\nnonroot:x:65532:\n' > $$work/bundle/rootfs/etc/group; \
		$(UMOCI) repack --image $$layout:$(RELEASE_VERSION) $$work/bundle; \
		$(UMOCI) config --image $$layout:$(RELEASE_VERSION) --os linux --architecture $$arch \
			--config.user 65532:65532 --config.entrypoint /testmesh --config.cmd run \
			--config.label org.opencontainers.image.title=testmesh \
			--config.label org.opencontainers.image.version=$(RELEASE_VERSION) \
			--config.label org.opencontainers.image.licenses=Apache-2.0; \
		$(UMOCI) gc --layout $$layout; \
		if [ $$arch = amd64 ]; then \
			$(UMOCI) unpack --image $$layout:$(RELEASE_VERSION) $$work/check >/dev/null; \
			version=$$($$work/check/rootfs/testmesh --version); \
			test "$$version" = "testmesh $(RELEASE_VERSION)" || { echo "the image's binary says '$$version'" >&2; exit 1; }; \
			echo "image $$arch: /testmesh --version: $$version"; \
		fi; \
		tar -C $$layout --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
			-cf $(DIST)/testmesh-$(RELEASE_VERSION)-oci-$$arch.tar .; \
		rm -rf $$work; \
	done
