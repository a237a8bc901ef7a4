# plot-palette backend. `make local` runs the system, `make test` runs every test tier.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1

.PHONY: venv local test test-fast test-deployed fuzz lint format openapi schemas synth bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,worker]'
	touch $@

venv: $(VENV)/.installed

local: venv
	$(VENV)/bin/plot-palette local

# The black-box tier (tests/blackbox) runs against the local runtime here, never a deployment.
test: venv
	env -u API_ENDPOINT -u USER_POOL_ID -u CLIENT_ID $(PY) -m pytest -n 2 --dist loadgroup

# The black-box tier against a deployment: API_ENDPOINT, USER_POOL_ID and CLIENT_ID (docs/deploy.md).
# --confcutdir keeps tests/conftest.py (moto's fake credentials) out: this run uses real AWS.
test-deployed: venv
	@test -n "$$API_ENDPOINT" -a -n "$$USER_POOL_ID" -a -n "$$CLIENT_ID" || \
		{ echo "set API_ENDPOINT, USER_POOL_ID and CLIENT_ID (see docs/deploy.md)"; exit 2; }
	$(PY) -m pytest tests/blackbox --confcutdir=tests/blackbox -v

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
