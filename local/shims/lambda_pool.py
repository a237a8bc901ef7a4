"""A burst of invocations waits briefly for a warm Lambda worker instead of starting one each.

MiniStack 1.5.33 runs each concurrent invocation of a Python function in its own warm subprocess
and starts a new one whenever none is idle (``lambda_runtime.acquire_worker``; no per-function
ceiling). On 2 cores a burst of 50 requests to one API function starts 50 Python interpreters at
once (~0.5-1 s of CPU each); they all finish cold-starting together, after the functions' 29 s
timeout, and the API answers 502/504 instead of serving the burst in a few seconds.

This shim keeps at most ``PLOT_PALETTE_LAMBDA_WORKERS`` (default 4) warm subprocesses per function
version. An invocation that finds them all busy waits for one to come free (warm invocations take
tens of milliseconds) for up to ``PLOT_PALETTE_LAMBDA_WAIT_SECONDS`` (default 20), then gets a
subprocess of its own as before: so a handler that invokes its own function synchronously (which
MiniStack's authors guard against) waits, never deadlocks. The account concurrency cap
(``LAMBDA_ACCOUNT_CONCURRENCY``) still counts every invocation in flight, waiting or running.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from local.shims import ShimNotApplicable, require_version

WORKERS_ENV = "PLOT_PALETTE_LAMBDA_WORKERS"
WAIT_ENV = "PLOT_PALETTE_LAMBDA_WAIT_SECONDS"
DEFAULT_WORKERS = 4
DEFAULT_WAIT_SECONDS = 20.0
_POLL_SECONDS = 0.01

Acquire = Callable[..., tuple[Any, str]]


def _number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise ShimNotApplicable(f"{name}={raw!r} is not a number") from None
    if value < 0:
        raise ShimNotApplicable(f"{name}={raw!r} is negative")
    return value


def waiting_acquire(acquire: Acquire, workers: int, wait_seconds: float) -> Acquire:
    """``acquire_worker`` with a per-function ceiling that waits, then falls back to MiniStack's own."""

    def acquire_worker(
        func_name: str, config: dict[str, Any], code_zip: bytes, qualifier: str = "$LATEST", **kwargs: Any
    ) -> tuple[Any, str]:
        if kwargs.get("max_concurrency"):  # an explicit ceiling (ReservedConcurrency): MiniStack's rules
            return acquire(func_name, config, code_zip, qualifier=qualifier, **kwargs)
        deadline = time.monotonic() + wait_seconds
        while True:
            worker, reason = acquire(
                func_name, config, code_zip, qualifier=qualifier, max_concurrency=workers
            )
            if worker is not None or time.monotonic() >= deadline:
                break
            time.sleep(_POLL_SECONDS)
        if worker is None:  # waited long enough: a subprocess of its own, as MiniStack would
            worker, reason = acquire(func_name, config, code_zip, qualifier=qualifier)
        return worker, reason

    return acquire_worker


def install() -> None:
    require_version("lambda_pool")
    from ministack.services import lambda_svc

    workers = int(_number(WORKERS_ENV, DEFAULT_WORKERS))
    if workers == 0:
        raise ShimNotApplicable(
            f"{WORKERS_ENV}=0: one subprocess per concurrent invocation (MiniStack's way)"
        )
    if not hasattr(lambda_svc, "acquire_worker"):
        raise ShimNotApplicable("MiniStack's lambda_svc has no acquire_worker")
    lambda_svc.acquire_worker = waiting_acquire(
        lambda_svc.acquire_worker, workers, _number(WAIT_ENV, DEFAULT_WAIT_SECONDS)
    )
