# Everything people and CI run. `make up` and `make test` are the README's two commands.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP_VERSION := 26.3
PIP_AUDIT_VERSION := 2.10.1
AUDIT_VENV := $(VENV)/audit

.PHONY: up down test unit check lint typecheck imports protos services audit clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet pip==$(PIP_VERSION)
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

## Start the whole platform locally and show it recommending.
up: $(STAMP)
	$(BIN)/magpie up

down: $(STAMP)
	$(BIN)/magpie down

## Lint, type-check, check imports and protos, run every test.
test: $(STAMP) check
	$(BIN)/python -m pytest

## The unit tier alone: no PostgreSQL, Redis, broker or Triton needed.
unit: $(STAMP)
	$(BIN)/python -m pytest -m "not integration"

check: lint typecheck imports
	PATH=$(abspath $(BIN)):$$PATH tools/check-protos

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## Import contracts (pyproject.toml [tool.importlinter]): layers, independent services,
## no torch on the serving path.
imports: $(STAMP)
	$(BIN)/lint-imports

## Regenerate protos/gen from protos/magpie/v1.
protos: $(STAMP)
	PATH=$(abspath $(BIN)):$$PATH tools/gen-protos

## Known vulnerabilities of every package in requirements.lock, from PyPI's advisory
## records (--disable-pip: the lock is read as it is, nothing is installed; --strict: a
## package that could not be checked fails the audit instead of passing unchecked).
## These machines' package index serves no vulnerability records, so here every package
## fails as unchecked: run it where pypi.org is reachable. pip-audit gets a venv of its own
## under $(VENV): not in the lock, not in the services' venv, not in CI.
audit: $(AUDIT_VENV)/.pip-audit-$(PIP_AUDIT_VERSION)
	$(AUDIT_VENV)/bin/pip-audit --requirement requirements.lock --require-hashes --disable-pip \
		--strict --progress-spinner off

$(AUDIT_VENV)/.pip-audit-$(PIP_AUDIT_VERSION):
	$(PYTHON) -m venv $(AUDIT_VENV)
	$(AUDIT_VENV)/bin/pip install --quiet pip-audit==$(PIP_AUDIT_VERSION)
	touch $@

## Start the machine's PostgreSQL, Redis and RabbitMQ when they are down (CI).
services:
	tools/ensure-services

clean:
	rm -rf $(VENV) .magpie .pytest_cache .mypy_cache .ruff_cache
