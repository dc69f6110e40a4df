# vidrec: two commands on a fresh machine: `make demo` and `make test`.
# Everything they need is installed here, idempotently; expensive things are cached
# under ~/.cache/vidrec, keyed by version.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON      ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION  := 0.13.9
CACHE       ?= $(HOME)/.cache/vidrec
UV_HOME     := $(CACHE)/uv-$(UV_VERSION)
UV          := $(UV_HOME)/bin/uv
VENV        := .venv
BIN         := $(VENV)/bin
# serve, traffic and bench use what make demo trained and wrote: say so, not "file not found"
NEED_DEMO   = test -f out/demo/vidrec.toml || { echo "make $@: out/demo/vidrec.toml is not there: run make demo first (it trains the champion and writes it)" >&2; exit 1; }
SYNCED      := $(VENV)/.synced-$(UV_VERSION)
APT_PACKAGES := redis-server prometheus
PYTEST_ARGS ?=

export UV_CACHE_DIR := $(CACHE)/uv
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := hardlink

.PHONY: help install sysdeps demo test test-unit lint bench serve traffic lock k8s-tools clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

$(UV):
	@mkdir -p $(CACHE)
	$(PYTHON) -m venv $(UV_HOME)
	$(UV_HOME)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(SYNCED): $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --extra dev --python $(PYTHON)
	@rm -f $(VENV)/.synced-* && touch $@

install: $(SYNCED) ## Create .venv from the lock file (uv, cached)

sysdeps: ## Install the Debian packages the tests use (redis-server, prometheus + promtool), if missing
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

demo: install sysdeps ## Run the lifecycle on embedded defaults (simulate -> features -> checks -> train -> serve + monitor -> retrain -> rollout; exit 1 if a check fails)
	$(BIN)/vidrec demo --out out/demo

test: install sysdeps k8s-tools ## Run the whole test suite (unit + integration; builds the test control plane once)
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: install sysdeps ## Run the unit tests only (no servers; promtool checks the alert rules)
	$(BIN)/pytest -m "not integration" $(PYTEST_ARGS)

lint: install ## ruff + mypy
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

bench: install ## Feature, training, serving and drift benchmarks (JSON, tables, PNG in out/bench; serving needs make demo)
	@$(NEED_DEMO)
	$(BIN)/vidrec bench features --scales demo,large --json
	$(BIN)/vidrec bench train --scale demo --sizes 100000,1000000 --json
	$(BIN)/vidrec bench serve --config out/demo/vidrec.toml --json
	$(BIN)/vidrec bench drift --days 42 --onset-day 36 --json

serve: install ## Serve the demo's champion on 127.0.0.1:8080 (run make demo first)
	@$(NEED_DEMO)
	$(BIN)/vidrec serve --config out/demo/vidrec.toml

traffic: install ## Replay simulated users with feedback against make serve
	@$(NEED_DEMO)
	$(BIN)/vidrec traffic --data out/demo/sim --rate 20 --duration 60

lock: $(UV) ## Re-resolve uv.lock after editing pyproject.toml
	$(UV) lock --python $(PYTHON)

k8s-tools: ## Build the test control plane (etcd, kube-*, kubectl, helm, kwok) from the Go module proxy (cached)
	tools/k8s/build.sh

# The kind quickstart (manifests/, tools/kind/): needs Docker, kind, kubectl, helm and internet.
.PHONY: kind-up kind-demo kind-down
kind-up: ## Build the image, create a kind cluster (cert-manager, KServe, kube-prometheus-stack), install the chart, train v1
	tools/kind/up.sh

kind-demo: install ## On that cluster: simulated users, a challenger trained and released by a ModelRollout (ROLLOUT=, ROLLBACK=1)
	tools/kind/demo.sh

kind-down: ## Delete the kind cluster
	tools/kind/down.sh

clean: ## Remove build outputs (keeps the cache)
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
