"""50 concurrent API requests to the local runtime, none refused with 429 (issue 14, item 12).

The emulator throttles Lambda invocations past its account concurrency cap; the runtime raises it
(local/runtime/settings.py). All 50 requests go to one function (POST /templates, one user) at
once from 50 threads on 127.0.0.1, so 50 invocations are in flight together.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.e2e.conftest import TEMPLATE, Runtime

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

REQUESTS = 50


def test_fifty_concurrent_creates_all_succeed(runtime: Runtime) -> None:
    token = runtime.token("burst-bea")
    start = threading.Barrier(REQUESTS)

    def create(index: int) -> tuple[int, str]:
        body = {**TEMPLATE, "name": f"burst {index}"}
        start.wait(timeout=60)
        answer = requests.post(
            f"{runtime.api_url}/templates",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        )
        return answer.status_code, answer.text

    with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
        answers = list(pool.map(create, range(REQUESTS)))

    statuses = sorted({status for status, _ in answers})
    assert statuses == [201], [text for status, text in answers if status != 201][:3]
    listed = requests.get(
        f"{runtime.api_url}/templates?limit=100", headers={"Authorization": f"Bearer {token}"}, timeout=30
    ).json()
    names = {t["name"] for t in listed["templates"] if t["name"].startswith("burst ")}
    assert names == {f"burst {index}" for index in range(REQUESTS)}
