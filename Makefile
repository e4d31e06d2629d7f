# The suite's commands. `make help` lists them; CI calls them exactly as they are written here.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: help env proto lint typecheck check test test-unit test-e2e test-deps run call bench screenshots clean

help: ## Show this list
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-11s %s\n", $$1, $$2}'

$(UV):
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is needed ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) uv.lock pyproject.toml $(wildcard services/*/pyproject.toml) deploy/local/pyproject.toml
	$(UV) sync --frozen --all-packages --python $(PYTHON)
	@touch $@

env: $(VENV)/.synced ## Create .venv and install every package of the workspace (from uv.lock)

proto: env ## Generate the protobuf/gRPC code from proto/ into the shared telecrm package
	$(PY) tools/gen_proto.py

lint: proto ## ruff (lint and format check)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: proto ## mypy over every service
	$(VENV)/bin/mypy services/common/src services/calls/src services/sip-gateway/src services/crm/src services/messaging/src services/queue/src services/web/src deploy/local/src

check: lint typecheck ## lint and type-check

test-deps: ## Install the system packages the tests need (sipp, kamailio, sipvicious, chromium), or say which are missing
	@tools/ensure_system_packages.sh sipp:sip-tester kamailio:kamailio svmap:sipvicious chromium:chromium

test: proto test-deps check ## Lint, type-check, then run every test (PostgreSQL when TEST_DATABASE_URL is set)
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: proto ## Run the tests that need no SIP peer and start no service process
	$(PY) -m pytest -m "not e2e and not sip" $(PYTEST_ARGS)

test-e2e: proto test-deps ## Run the end-to-end tests only
	$(PY) -m pytest -m e2e $(PYTEST_ARGS)

run: proto ## Run the whole suite (nats-server + every service); Ctrl-C stops it
	$(PY) -m telecrm_devstack.launcher run

call: env ## Place one real SIP call against the running gateway (make call EXT=101 SECONDS=3)
	$(PY) -m telecrm_devstack.call $(if $(EXT),--extension $(EXT)) $(if $(SECONDS),--seconds $(SECONDS))

bench: proto test-deps ## Run the benchmarks and print their table (BENCH_ARGS="--only bus --calls 5000")
	$(PY) -m tests.bench $(BENCH_ARGS)

screenshots: proto test-deps ## Start the suite, place two calls and save PNGs of the agent desktop under var/screenshots/
	$(PY) services/web/tools/screenshots.py

clean: ## Remove the environment, generated code and local data
	rm -rf $(VENV) $(TOOLS) var services/common/src/telecrm .pytest_cache .mypy_cache .ruff_cache
