# Everything people and CI run. `make up` and `make test` are the README's two commands.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up down test unit check lint typecheck imports protos services clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
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

## Start the machine's PostgreSQL, Redis and RabbitMQ when they are down (CI).
services:
	tools/ensure-services

clean:
	rm -rf $(VENV) .magpie .pytest_cache .mypy_cache .ruff_cache
