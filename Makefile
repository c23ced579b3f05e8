# kalshi-data: the commands README uses. `make help` lists them.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help setup services demo test lint bench clean

help:
	@echo "make setup    - venv + pip install -e .[dev], PostgreSQL/Redis started if down"
	@echo "make demo     - set up, then run the main job against the simulator"
	@echo "make test     - the test suite (what CI runs after lint)"
	@echo "make lint     - ruff + mypy"
	@echo "make bench    - benchmarks (JSON to stdout, not part of CI)"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) services

services:
	@bash scripts/ensure-services.sh

demo: setup
	$(BIN)/kalshi-data demo

test: setup
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: setup
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
