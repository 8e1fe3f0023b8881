# raytrader — `make help` lists the targets. Every target creates .venv and installs what it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
CONSTRAINTS := requirements/constraints.txt
export PIP_CACHE_DIR ?= $(HOME)/.cache/pip
export NUMBA_CACHE_DIR ?= $(HOME)/.cache/raytrader/numba
# helm, kubeconform, helm-unittest, checkov and the offline schemas the chart tests (tests/deploy)
# use: pinned in scripts/install-k8s-tools.sh, cached here across checkouts
export RAYTRADER_K8S_TOOLS ?= $(HOME)/.cache/raytrader/k8s-tools
K8S_TOOLS := $(RAYTRADER_K8S_TOOLS)/tools.env

.PHONY: help venv demo test test-unit test-integration chart-test bench bench-cluster lint constraints clean
.PHONY: stack-up stack-down image image-test cluster-up cluster-down cluster-load cluster-env

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { command -v apt-get >/dev/null && (apt-get update -qq && apt-get install -y -qq python3 python3-venv python3-dev) ; }
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 (Debian 12: apt-get install python3 python3-venv)" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV) || { apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PIP) install -q --upgrade pip

$(VENV)/.debian: scripts/install-debian-deps.sh | $(BIN)/python
	bash scripts/install-debian-deps.sh
	touch $@

$(VENV)/.installed: $(BIN)/python $(VENV)/.debian pyproject.toml $(CONSTRAINTS)
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[dev,stack,train,dashboard]'
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[dev,stack,train,dashboard,bench]'
	# FinRL's StockTradingEnv, the env benchmark's reference: its package pulls live-trading
	# clients we cannot install, so it goes in without dependencies (its env needs only ours)
	$(PIP) install -q --no-deps finrl==0.3.7 stable-baselines3==2.9.2
	touch $@

# a no-op when every pinned tool is in the cache; re-runs when the pins or the cache change
$(K8S_TOOLS): scripts/install-k8s-tools.sh scripts/crd-to-jsonschema.py requirements/checkov.txt
	PYTHON=$(PYTHON) bash scripts/install-k8s-tools.sh
	touch $@

venv: $(VENV)/.installed ## create .venv with raytrader and the dev tools

demo: $(VENV)/.installed ## run the main job on embedded defaults (bundled data, local Ray)
	$(BIN)/raytrader demo

test: $(VENV)/.installed $(K8S_TOOLS) ## run every test (unit, integration with a local Ray, slow, the Kubernetes cluster)
	$(BIN)/python -m pytest -q

test-unit: $(VENV)/.installed ## unit tests only (no Ray, no services)
	$(BIN)/python -m pytest -q -m 'not integration and not slow'

test-integration: $(VENV)/.installed ## integration tests only
	$(BIN)/python -m pytest -q -m integration

chart-test: $(VENV)/.installed $(K8S_TOOLS) ## the Helm chart's offline checks (lint, kubeconform, checkov, helm-unittest)
	$(BIN)/python -m pytest -q tests/deploy/test_chart.py

image: ## build the image on the official Ray image (needs Docker Hub): raytrader:<version>
	docker build -t raytrader:$$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml) .

image-test: $(VENV)/.installed ## build the image on a locally built base (no registry) and check it
	$(BIN)/python -m pytest -q tests/deploy/test_image.py

bench: $(VENV)/.installed-bench ## run the side-by-side benchmarks, write benchmarks/RESULTS.md
	$(BIN)/python -m benchmarks.run

bench-cluster: $(VENV)/.installed $(K8S_TOOLS) ## Serve's default vs throughput mode on the test cluster (~30 min): benchmarks/results/serve-modes-cluster.json
	$(BIN)/python -m pytest -q -s tests/cluster/bench_serve_modes.py

lint: $(VENV)/.installed ## ruff, mypy and the import layering (import-linter)
	$(BIN)/ruff check src tests benchmarks pipelines
	$(BIN)/mypy
	$(BIN)/lint-imports

stack-up: $(VENV)/.installed ## start the local stack on 127.0.0.1 (Kafka, Postgres, Redis, MLflow, Ray, Feast)
	$(BIN)/raytrader stack up

stack-down: $(VENV)/.installed ## stop the local stack (state kept; `raytrader stack down --purge` resets it)
	$(BIN)/raytrader stack down

cluster-up: $(K8S_TOOLS) ## build (once, cached) and start a one-node Kubernetes cluster in its own namespaces
	bash scripts/cluster/build.sh
	bash scripts/cluster/up.sh

cluster-down: ## stop the local cluster and restore the machine (the build cache stays)
	bash scripts/cluster/down.sh

cluster-load: ## load an image into the local cluster's node: make cluster-load IMAGE=raytrader:test (a name Docker has, or a docker-archive .tar)
	@test -n "$(IMAGE)" || { echo "error: name the image: make cluster-load IMAGE=raytrader:test" >&2; exit 2; }
	bash scripts/cluster/load-image.sh "$(IMAGE)"

cluster-env: ## print the lines that point a shell at the local cluster (KUBECONFIG, PATH)
	@bash scripts/cluster/env.sh

constraints: $(VENV)/.installed-bench ## re-pin requirements/constraints.txt from the current .venv
	{ head -2 $(CONSTRAINTS); $(PIP) freeze --exclude-editable; } > $(CONSTRAINTS).new && mv $(CONSTRAINTS).new $(CONSTRAINTS)

clean: ## remove .venv, caches and run outputs
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis runs
