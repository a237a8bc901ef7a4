"""Cold import of every API handler versus ``import boto3; boto3.client("dynamodb")``.

What a user waits for on a cold API call is mostly the handler's import. The reference is the least
any Python Lambda that talks to DynamoDB pays: boto3 and one client. Each sample is a fresh
interpreter (``python -X importtime`` would add its own overhead, so a ``perf_counter`` around the
import is used instead), with the environment of a deployed function: ``AWS_LAMBDA_FUNCTION_NAME``
set, so Powertools behaves as in Lambda (a ``Tracer`` built at import would patch and import the
X-Ray SDK here too). Samples of the reference and the handlers are interleaved and the median
taken, so a busy machine slows both alike. Goal (issue 13): every ratio <= 1.5. The fastest sample
of each is shown too (``min``): load only ever adds time, so on a shared machine it is the steadier
figure; the verdict stays on the median.

Every module loads from bytecode, as in Lambda, where the dependencies layer and the function code
both ship theirs (``stacks/bundling.py``): all samples share one fresh bytecode cache
(``PYTHONPYCACHEPREFIX``), filled by a warm-up import of each statement. So neither a machine's
``PYTHONDONTWRITEBYTECODE`` (this one sets it: earlier runs compiled the project's own modules from
source in every sample, the third-party ones not) nor stale ``__pycache__`` directories change what
is measured.

The ``+ eager Tracer`` row is the jobs handler plus what ``functions.common.observability`` used to
do at import (``Tracer(service=...)``): what lazy tracing saves.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "cold_start.txt"
SAMPLES = int(os.environ.get("COLD_START_SAMPLES", "9"))
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
    # The rest of every function's environment (stacks/lambdas.py BASE_ENVIRONMENT; an infra test
    # keeps the two in step).
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "PYDANTIC_DISABLE_PLUGINS": "__all__",
}


def _environment(bytecode_cache: str) -> dict[str, str]:
    dropped = ("AWS_", "POWERTOOLS_", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    return inherited | ENVIRONMENT | {"PYTHONPYCACHEPREFIX": bytecode_cache}


def _sample(statement: str, environment: dict[str, str]) -> float:
    code = f"import time\nt = time.perf_counter()\n{statement}\nprint(time.perf_counter() - t)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def measure(samples: int = SAMPLES) -> tuple[list[float], dict[str, list[float]]]:
    """Every sample of the reference and of each statement, in seconds."""
    statements = {**HANDLERS, **EXTRA}
    with tempfile.TemporaryDirectory(prefix="cold-start-bytecode-") as cache:
        environment = _environment(cache)
        _sample(REFERENCE, environment)  # warm the disk cache and fill the bytecode cache
        for statement in statements.values():
            _sample(statement, environment)
        reference: list[float] = []
        timings: dict[str, list[float]] = {name: [] for name in statements}
        for _ in range(samples):
            for name, statement in statements.items():
                reference.append(_sample(REFERENCE, environment))
                timings[name].append(_sample(statement, environment))
    return reference, timings


def run() -> tuple[list[str], dict[str, float]]:
    """The table (also written to ``benchmarks/results/cold_start.txt``) and each median ratio."""
    reference_samples, samples = measure()
    reference, fastest = statistics.median(reference_samples), min(reference_samples)
    lines = [
        'cold import vs `import boto3; boto3.client("dynamodb")` '
        f"(median of {SAMPLES} fresh interpreters, every module from bytecode; "
        f"reference {reference * 1000:.0f} ms, fastest {fastest * 1000:.0f} ms; goal <= {GOAL}x)",
        f"{'handler':<22} {'ms':>7} {'ratio':>6}  goal  {'min ms':>6} {'min ratio':>9}",
    ]
    ratios: dict[str, float] = {}
    for name, timings in samples.items():
        seconds = statistics.median(timings)
        ratio = seconds / reference
        ratios[name] = round(ratio, 2)
        verdict = ("ok" if ratio <= GOAL else "OVER") if name in HANDLERS else "-"
        lines.append(
            f"{name:<22} {seconds * 1000:>7.0f} {ratio:>6.2f}  {verdict:<4}  "
            f"{min(timings) * 1000:>6.0f} {min(timings) / fastest:>9.2f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    return lines, {"reference_ms": round(reference * 1000), **ratios}


if __name__ == "__main__":
    print("\n".join(run()[0]))
