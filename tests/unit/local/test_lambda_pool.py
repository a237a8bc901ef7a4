"""local/shims/lambda_pool.py around MiniStack's own warm-worker pool (in-process; no subprocess is
started: a pool entry becomes a process only when it is invoked)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from ministack.core import lambda_runtime

from local.shims.lambda_pool import waiting_acquire

pytestmark = pytest.mark.unit

CONFIG = {
    "FunctionName": "pool-check",
    "FunctionArn": "arn:aws:lambda:us-east-1:000000000000:function:pool-check",
    "Runtime": "python3.12",
    "Version": "$LATEST",
}


@pytest.fixture
def pool() -> Iterator[None]:
    yield
    with lambda_runtime._lock:
        for key in [k for k in lambda_runtime._workers if "pool-check" in str(k)]:
            del lambda_runtime._workers[key]


def _acquire(acquire: Any) -> Any:
    worker, _ = acquire("pool-check", CONFIG, b"zip")
    return worker


def test_past_the_ceiling_an_invocation_waits_for_a_warm_worker(pool: None) -> None:
    acquire = waiting_acquire(lambda_runtime.acquire_worker, workers=2, wait_seconds=10)
    first, second = _acquire(acquire), _acquire(acquire)
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(_acquire(acquire)))
    waiter.start()
    time.sleep(0.3)
    assert got == []  # both workers busy: it waits instead of starting a third
    lambda_runtime.release_worker(second)
    waiter.join(timeout=5)
    assert got == [second]
    assert first is not second


def test_after_the_wait_it_gets_a_worker_of_its_own(pool: None) -> None:
    acquire = waiting_acquire(lambda_runtime.acquire_worker, workers=1, wait_seconds=0.2)
    held = _acquire(acquire)
    started = time.monotonic()
    extra = _acquire(acquire)
    assert extra is not None
    assert extra is not held
    assert time.monotonic() - started >= 0.2
