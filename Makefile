# Two commands on a fresh machine: `make run` (the relay on its embedded PostgreSQL) and
# `make test` (lint, types and the whole test suite against real PostgreSQL).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test lint typecheck unit bench chromium

$(BIN)/relay: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,embedded]"
	touch $@

install: $(BIN)/relay

run: install
	$(BIN)/relay serve

lint: install
	$(BIN)/ruff check src tests migrations bench
	$(BIN)/ruff format --check src tests migrations bench

typecheck: install
	$(BIN)/mypy

# The bench extra (matplotlib, py-spy) is needed by `make bench` and by its smoke test.
$(VENV)/.bench-extra: $(BIN)/relay
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	touch $@

# The console's browser tests drive Debian's Chromium (never a browser Playwright downloads).
chromium:
	test -x /usr/bin/chromium || apt-get install -y -qq chromium >/dev/null \
		|| (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

test: lint typecheck $(VENV)/.bench-extra chromium
	$(BIN)/python -m pytest

# All six figures of docs/benchmarks.md against this machine's PostgreSQL (or
# RELAY_BENCH_DATABASE_URL); wrk is the load generator where it can be installed.
bench: $(VENV)/.bench-extra
	command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null 2>&1 \
		|| echo "wrk not installed: the Python load generator is used instead"
	$(BIN)/python -m bench
