# ucloud-operator. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export UCLOUD_CLUSTER ?= ucloud

.PHONY: help venv crd lint soak test test-unit test-integration control-plane cluster cluster-down \
        run demo clean test-node node test-second-version test-without-workload-api

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(BIN)/python: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/python

venv: $(BIN)/python ## create .venv with the pinned dependencies

crd: $(BIN)/python ## regenerate manifests/crd.yaml from the pydantic models
	$(BIN)/python -m ucloud_operator.crd > manifests/crd.yaml

# bench/ is linted too: with its extra installed, so mypy checks the plot against matplotlib's types.
lint: $(VENV)/.bench-deps ## ruff and mypy (operator, tests, bench)
	$(BIN)/ruff check operator tests bench
	$(BIN)/ruff format --check operator bench
	$(BIN)/mypy

soak: $(BIN)/python ## the long reliability runs: 200 jobs under random SIGKILLs, control-plane restart
	# A fresh cluster: the soak restarts processes by hand (recorded in kwokctl's pid files, so
	# that `down` stops them, and only them).
	UCLOUD_CLUSTER=$${SOAK_CLUSTER:-soak} hack/cluster.sh down
	UCLOUD_CLUSTER=$${SOAK_CLUSTER:-soak} UCLOUD_CRASH_JOBS=200 UCLOUD_CRASH_KILLS=8 \
	  $(BIN)/pytest tests/reliability/test_crash.py tests/soak -q -s

test-unit: $(BIN)/python ## unit tests (no cluster)
	$(BIN)/pytest tests/unit -q

control-plane: ## build etcd, kube-*, kwok, kubectl, helm from Go modules into the cache
	hack/build-control-plane.sh

test-integration: $(BIN)/python ## integration and fast reliability tests on the local control plane
	$(BIN)/pytest tests/integration tests/reliability -q

# The e2e tier runs through `make e2e-local` (chart installed, operator as its ServiceAccount) and
# `make e2e-node` (chart installed, operator as its pod on the real node).
test: lint chart-lint $(BIN)/python ## everything CI runs: lint, all test tiers, the chart end to end
	$(BIN)/pytest tests/unit tests/integration tests/reliability -q
	$(MAKE) test-second-version
	$(MAKE) test-without-workload-api
	$(MAKE) e2e-local
	$(MAKE) e2e-upgrade
	$(MAKE) test-node
	$(MAKE) e2e-node

# The integration tier (gang tests included) on the other supported Kubernetes, in a cluster of
# its own (deleted after), its binaries built into a cache folder of their own.
test-second-version: $(BIN)/python ## the integration tier on hack/versions.env's SECOND_KUBE_VERSION (1.36)
	source hack/versions.env; export KUBE_VERSION=$$SECOND_KUBE_VERSION; \
	  cluster=$(UCLOUD_CLUSTER)-second; hack/build-control-plane.sh >/dev/null; \
	  rc=0; UCLOUD_CLUSTER=$$cluster $(BIN)/pytest tests/integration -q || rc=$$?; \
	  UCLOUD_CLUSTER=$$cluster hack/cluster.sh down >/dev/null 2>&1; exit $$rc

# `--gang-admission=auto` where the API server serves no Workload API: as before it existed.
test-without-workload-api: $(BIN)/python ## gang admission's auto and on on a cluster without the Workload API
	cluster=$(UCLOUD_CLUSTER)-noworkload; rc=0; \
	  UCLOUD_WORKLOAD_API=0 UCLOUD_CLUSTER=$$cluster $(BIN)/pytest tests/without_workload_api \
	    tests/integration/test_rules.py -q || rc=$$?; \
	  UCLOUD_CLUSTER=$$cluster hack/cluster.sh down >/dev/null 2>&1; exit $$rc

# One real node per machine (its bridge and kube-proxy's iptables chains are the machine's): the
# tier's cluster is deleted after it, so that e2e-node can start its own.
test-node: $(BIN)/python ## the real-node tier: replicas as real containers on a kubelet (root; builds the node)
	hack/build-node.sh >/dev/null
	rc=0; UCLOUD_REAL_NODE=1 UCLOUD_CLUSTER=$${NODE_CLUSTER:-node} $(BIN)/pytest tests/node -q || rc=$$?; \
	  [[ "$${NODE_KEEP_CLUSTER:-0}" == 1 ]] || UCLOUD_CLUSTER=$${NODE_CLUSTER:-node} hack/cluster.sh down; exit $$rc

node: ## build the real node's parts (containerd, CNI plugins, CoreDNS, images) into the cache
	hack/build-node.sh

cluster: ## start the local control plane with 3 KWOK nodes (UCLOUD_REAL_NODE=1: and a real node); prints the kubeconfig
	hack/cluster.sh up

cluster-down: ## stop and delete the local control plane
	hack/cluster.sh down

run: $(BIN)/python ## run the operator against $$KUBECONFIG (CRD applied first)
	kubectl apply --server-side -f manifests/crd.yaml
	$(BIN)/python -m ucloud_operator

demo: $(BIN)/python ## local cluster, CRD, operator and the examples, watched live
	hack/demo.sh

clean: ## remove the virtualenv and caches (not the control-plane cache)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# ---------------------------------------------------------------- packaging and end-to-end tests
CHART := helm/ucloud-operator
IMAGE ?= ucloud-operator:dev

.PHONY: manifests chart-lint chart-docs chart-docs-check image e2e-local e2e-upgrade e2e-image e2e-node e2e-kind

manifests: ## copy manifests/crd.yaml into the chart and render manifests/install.yaml from it
	bin="$$(hack/build-control-plane.sh | tail -n1)"; source hack/versions.env; \
	cp manifests/crd.yaml $(CHART)/files/crd.yaml; \
	{ printf '%s\n' \
	  '# ucloud-operator, plain-YAML install: the Helm chart $(CHART) rendered with its default' \
	  '# values by `make manifests` (do not edit; a unit test fails when it drifts from the chart).' \
	  '#   kubectl create namespace ucloud-system' \
	  '#   kubectl apply --server-side -f manifests/install.yaml'; \
	  "$$bin/helm" template ucloud-operator $(CHART) --namespace ucloud-system \
	    --kube-version "$$KUBE_VERSION"; } > manifests/install.yaml

chart-lint: chart-docs-check ## helm lint --strict the chart with each of its ci/*-values.yaml; its README is fresh
	bin="$$(hack/build-control-plane.sh | tail -n1)"; \
	for values in $(CHART)/ci/*-values.yaml; do \
	  echo "helm lint --strict -f $$values"; "$$bin/helm" lint --strict $(CHART) -f "$$values"; \
	done

# helm-docs (hack/build-helm-docs.sh): README.md from README.md.gotmpl and values.yaml's `# --`
# comments, values in file order. (Its --documentation-strict-mode refuses documented parents
# too; tests/unit/test_chart_conventions.py checks that every value has a description.)
HELM_DOCS_FLAGS := --sort-values-order file --log-level warning

chart-docs: ## regenerate the chart's README.md from README.md.gotmpl and values.yaml (helm-docs)
	helm_docs="$$(hack/build-helm-docs.sh | tail -n1)"; \
	"$$helm_docs" --chart-search-root $(CHART) $(HELM_DOCS_FLAGS)

chart-docs-check: ## fail when the chart's README.md is not what `make chart-docs` makes
	helm_docs="$$(hack/build-helm-docs.sh | tail -n1)"; \
	work="$$(mktemp -d)"; trap 'rm -rf "$$work"' EXIT; \
	cp -R $(CHART) "$$work/chart"; rm "$$work/chart/README.md"; \
	"$$helm_docs" --chart-search-root "$$work/chart" $(HELM_DOCS_FLAGS); \
	diff -u $(CHART)/README.md "$$work/chart/README.md" || \
	  { echo "$(CHART)/README.md is stale: run \`make chart-docs\` (it is generated from README.md.gotmpl and values.yaml)" >&2; exit 1; }

image: ## build the operator image as $(IMAGE): docker if its engine runs, else podman (hack/image.sh)
	IMAGE=$(IMAGE) hack/image.sh

e2e-local: $(BIN)/python ## chart installed on the local control plane, operator as its ServiceAccount, tests/e2e
	E2E_CLUSTER=$${E2E_CLUSTER:-e2e} hack/e2e-local.sh

e2e-upgrade: $(BIN)/python ## helm upgrade from UPGRADE_FROM's chart and operator to this tree's with jobs in flight, then helm rollback
	hack/e2e-upgrade.sh

e2e-image: $(BIN)/python ## make image, then e2e-local with the operator run from it (podman run --read-only, in-cluster config)
	E2E_OPERATOR=container IMAGE=$(IMAGE) E2E_CLUSTER=$${E2E_CLUSTER:-e2e-img} hack/e2e-local.sh

e2e-node: $(BIN)/python ## make image, imported into the real node; helm install --wait, the operator as its pod there; tests/e2e
	IMAGE=$(IMAGE) hack/e2e-node.sh

e2e-kind: ## kind cluster, image built and loaded, chart installed, tests/e2e (needs docker and kind)
	hack/e2e-kind.sh

# ---------------------------------------------------------------- benchmark (bench/README.md; not part of `make test`)
.PHONY: bench bench-quick

$(VENV)/.bench-deps: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

bench: $(VENV)/.bench-deps ## operator vs Job controller: N = 100, 1000, 5000 x R = 4, 10,000 resident (long)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

bench-quick: $(VENV)/.bench-deps ## the benchmark at N = 100 only, both regimes (a few minutes)
	$(BIN)/python bench/run.py --scales 100 --resident 0 $(BENCH_ARGS)
