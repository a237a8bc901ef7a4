# plot-palette backend. `make local` runs the system, `make test` runs every test tier.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1

.PHONY: venv local test test-fast fuzz lint format openapi schemas synth bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,worker]'
	touch $@

venv: $(VENV)/.installed

local: venv
	$(VENV)/bin/plot-palette local

test: venv
	$(PY) -m pytest -n 2 --dist loadgroup

# The fuzz tier with thousands of cases (make test runs it bounded: FUZZ_EXAMPLES=12, fixed seed).
fuzz: venv
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-250} $(PY) -m pytest -n 0 tests/e2e/test_fuzz.py

test-fast: venv
	$(PY) -m pytest tests/unit tests/integration -n 2

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

openapi: venv
	$(PY) -m functions.openapi

schemas: venv
	$(PY) -m functions.schemas docs/events

synth: venv
	$(VENV)/bin/python -m stacks.synth

bench: venv
	$(PY) -m benchmarks

clean:
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache
