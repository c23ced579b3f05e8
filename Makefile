# kalshi-data: the commands README uses. `make help` lists them.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help setup ops-tools services timescaledb demo test lint bench clean

help:
	@echo "make setup    - venv + pip install -e .[dev], TimescaleDB built if missing, PostgreSQL/Redis started if down"
	@echo "make demo     - set up, then run the main job against the simulator"
	@echo "make test     - the test suite (what CI runs after lint)"
	@echo "make lint     - ruff + mypy"
	@echo "make bench    - benchmarks (JSON to stdout, not part of CI)"

OPS := .venv-ops
OPS_STAMP := $(OPS)/.installed

$(OPS_STAMP): requirements-ops.txt
	test -x $(OPS)/bin/python || $(PY) -m venv $(OPS)
	$(OPS)/bin/pip install -q --upgrade pip
	$(OPS)/bin/pip install -q -r requirements-ops.txt
	touch $(OPS_STAMP)

ops-tools: $(OPS_STAMP)
	@command -v promtool >/dev/null || (command -v apt-get >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null) || echo "promtool not installed: alert rules are checked structurally only"
	@command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || (command -v apt-get >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-compose >/dev/null) || true

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ops-tools timescaledb services

# The tests run gatherer databases on TimescaleDB too (their own cluster); fails when it cannot be installed.
timescaledb:
	@bash scripts/ensure-timescaledb.sh

services:
	@bash scripts/ensure-services.sh

demo: setup
	$(BIN)/kalshi-data demo

test: setup
	$(BIN)/pytest -q -n 2

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: setup
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) $(OPS) .mypy_cache .pytest_cache .ruff_cache
