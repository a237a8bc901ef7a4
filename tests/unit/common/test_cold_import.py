"""What a cold import of each API handler must not load (benchmarks/cold_start.py measures the cost).

Each handler is imported in a fresh interpreter with a Lambda-like environment, as the benchmark
does. The modules listed are the ones a route imports on its own use, or nothing at all: importing
one of them again at module level is the regression these tests catch. The routes that use them are
tested in tests/integration (dry run, YAML export/import, /docs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from functions.common.api import API_DOMAINS

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]

# Nowhere on an API cold start.
EVERY_HANDLER = (
    "pydantic_settings",  # settings are plain pydantic models (functions/common/settings.py)
    "aws_xray_sdk",  # Lambda active tracing instead of the SDK (functions/common/observability.py)
    "jinja2",  # the template sandbox: template writes and the dry run only
    "yaml",  # YAML export/import only
    "functions.worker",
    "functions.templates.dry_run",
    "functions.templates.portable",
    "functions.templates.analysis",
    "functions.common.events",  # the event models: a route that publishes imports its own
    "functions.common.rate_limit",  # job creates and dry runs only
    "aws_lambda_powertools.utilities.idempotency",  # job creates with an Idempotency-Key only
)
PER_HANDLER = {
    # Swagger UI (GET /docs) builds Powertools' OpenAPI models on import.
    "health": ("aws_lambda_powertools.event_handler.openapi.swagger_ui",),
    # The dashboard reads one job: not the jobs service.
    "dashboard": ("functions.jobs.service",),
    # Only POST /jobs looks a template up.
    "jobs": ("functions.templates",),
    # The product routes' service and reads (versions, marketplace, fork, export, import).
    "templates": (
        "functions.seed_data.reader",
        "functions.templates.product_repository",
        "functions.templates.product_service",
    ),
}


def _loaded_modules(domain: str) -> set[str]:
    probe = f"import json, sys, functions.{domain}.handler; print(json.dumps(sorted(sys.modules)))"
    environment = os.environ | {"AWS_LAMBDA_FUNCTION_NAME": f"plot-palette-{domain}"}
    answer = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=environment, capture_output=True, text=True, check=True
    )
    return set(json.loads(answer.stdout))


@pytest.mark.parametrize("domain", API_DOMAINS)
def test_a_cold_import_loads_only_what_every_route_needs(domain: str) -> None:
    loaded = _loaded_modules(domain)
    assert f"functions.{domain}.handler" in loaded
    forbidden = (*EVERY_HANDLER, *PER_HANDLER.get(domain, ()))
    offending = sorted(m for m in loaded if any(m == f or m.startswith(f"{f}.") for f in forbidden))
    assert offending == [], f"functions.{domain}.handler imports {offending} at cold start"


@pytest.mark.parametrize("domain", API_DOMAINS)
def test_a_handler_imports_without_collector_passes_and_leaves_the_collector_on(domain: str) -> None:
    """functions/common/coldstart.py: paused for the import (no pass counted), then frozen and on."""
    probe = (
        # The (empty) packages first: finding them runs a gen-0 pass or two before the handler starts.
        f"import gc, json, functions.{domain}\n"
        "before = [s['collections'] for s in gc.get_stats()]\n"
        f"import functions.{domain}.handler\n"
        "after = [s['collections'] for s in gc.get_stats()]\n"
        "print(json.dumps([before, after, gc.isenabled(), gc.get_freeze_count()]))"
    )
    environment = os.environ | {"AWS_LAMBDA_FUNCTION_NAME": f"plot-palette-{domain}"}
    answer = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=environment, capture_output=True, text=True, check=True
    )
    before, after, enabled, frozen = json.loads(answer.stdout.strip().splitlines()[-1])
    # Not one pass once the handler's first line ran: at most the one young-generation pass that
    # locating and loading the module itself may run (without the pause: hundreds, and full ones).
    assert after[0] - before[0] <= 1
    assert after[1:] == before[1:]
    assert enabled is True
    assert frozen > 10_000  # the import's objects, out of every later pass
