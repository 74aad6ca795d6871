# Two commands on a fresh machine: `make run` (the relay on its embedded PostgreSQL) and
# `make test` (lint, types and the whole test suite against real PostgreSQL).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test lint typecheck unit

$(BIN)/relay: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/relay

run: install
	$(BIN)/relay serve

lint: install
	$(BIN)/ruff check src tests migrations
	$(BIN)/ruff format --check src tests migrations

typecheck: install
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest
