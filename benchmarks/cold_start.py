"""Cold import of every API handler versus ``import boto3; boto3.client("dynamodb")``.

What a user waits for on a cold API call is mostly the handler's import. The reference is the least
any Python Lambda that talks to DynamoDB pays: boto3 and one client. Each sample is a fresh
interpreter (``python -X importtime`` would add its own overhead, so a ``perf_counter`` around the
import is used instead), with the environment of a deployed function: ``AWS_LAMBDA_FUNCTION_NAME``
set, so Powertools behaves as in Lambda (a ``Tracer`` built at import would patch and import the
X-Ray SDK here too). Samples of the reference and the handlers are interleaved and the median
taken, so a busy machine slows both alike. Goal (issue 13): every ratio <= 1.5.

The ``+ eager Tracer`` row is the jobs handler plus what ``functions.common.observability`` used to
do at import (``Tracer(service=...)``): what lazy tracing saves.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "cold_start.txt"
SAMPLES = int(os.environ.get("COLD_START_SAMPLES", "5"))
GOAL = 1.5

REFERENCE = 'import boto3; boto3.client("dynamodb")'
HANDLERS = {
    "health": "import functions.health.handler",
    "jobs": "import functions.jobs.handler",
    "templates": "import functions.templates.handler",
    "seed_data": "import functions.seed_data.handler",
    "dashboard": "import functions.dashboard.handler",
}
EXTRA = {
    "jobs + eager Tracer": (
        "import functions.jobs.handler\n"
        "from aws_lambda_powertools import Tracer\n"
        "Tracer(service='plot-palette')"
    ),
}
ENVIRONMENT = {
    "AWS_LAMBDA_FUNCTION_NAME": "plot-palette-bench",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "POWERTOOLS_SERVICE_NAME": "plot-palette",
    "POWERTOOLS_METRICS_NAMESPACE": "PlotPalette",
}


def _sample(statement: str) -> float:
    code = f"import time\nt = time.perf_counter()\n{statement}\nprint(time.perf_counter() - t)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))} | ENVIRONMENT
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def measure(samples: int = SAMPLES) -> tuple[float, dict[str, float]]:
    statements = {**HANDLERS, **EXTRA}
    _sample(REFERENCE)  # warm the disk cache and the bytecode caches
    for statement in statements.values():
        _sample(statement)
    reference: list[float] = []
    timings: dict[str, list[float]] = {name: [] for name in statements}
    for _ in range(samples):
        for name, statement in statements.items():
            reference.append(_sample(REFERENCE))
            timings[name].append(_sample(statement))
    return statistics.median(reference), {name: statistics.median(t) for name, t in timings.items()}


def run() -> tuple[list[str], dict[str, float]]:
    """The table (also written to ``benchmarks/results/cold_start.txt``) and each ratio."""
    reference, handlers = measure()
    lines = [
        'cold import vs `import boto3; boto3.client("dynamodb")` '
        f"(median of {SAMPLES} fresh interpreters; reference {reference * 1000:.0f} ms; goal <= {GOAL}x)",
        f"{'handler':<22} {'ms':>7} {'ratio':>6}  goal",
    ]
    for name, seconds in handlers.items():
        ratio = seconds / reference
        verdict = "ok" if ratio <= GOAL else "OVER"
        shown = verdict if name in HANDLERS else "-"
        lines.append(f"{name:<22} {seconds * 1000:>7.0f} {ratio:>6.2f}  {shown}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    ratios = {name: round(seconds / reference, 2) for name, seconds in handlers.items()}
    return lines, {"reference_ms": round(reference * 1000), **ratios}


if __name__ == "__main__":
    print("\n".join(run()[0]))
