"""Drive a running API over real HTTP: the local runtime (tests/e2e) or a deployment (tests/blackbox).

Both tiers use this one client, poll helper and presigned-upload step; each adds its own fixtures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from functions.common.status import JobStatus

TERMINAL = frozenset(status.value for status in JobStatus if not status.is_active)
HTTP_TIMEOUT = 30


@dataclass
class HttpClient:
    """One user's client of the API (``token`` None: anonymous), with real bearer tokens."""

    base: str
    token: str | None = None
    session: requests.Session = field(default_factory=requests.Session)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if self.token is not None:
            headers.setdefault("Authorization", f"Bearer {self.token}")
        return self.session.request(
            method, self.base.rstrip("/") + path, headers=headers, timeout=HTTP_TIMEOUT, **kwargs
        )

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def job_status(self, job_id: str) -> str | None:
        """The job's status, or None once GET answers anything but 200 (deleted, or not ours)."""
        answer = self.get(f"/jobs/{job_id}")
        return str(answer.json()["status"]) if answer.status_code == 200 else None

    def upload(self, filename: str, body: bytes) -> dict[str, Any]:
        """POST /seed-data/upload, then a plain HTTP PUT of ``body`` to the presigned URL.

        Answers the upload route's JSON (``s3_key``, ``upload_url``, ``content_type``)."""
        answer = self.post("/seed-data/upload", json={"filename": filename})
        assert answer.status_code == 200, answer.text
        upload: dict[str, Any] = answer.json()
        put = requests.put(
            upload["upload_url"],
            data=body,
            headers={"Content-Type": upload["content_type"]},
            timeout=HTTP_TIMEOUT,
        )
        assert put.status_code == 200, put.text
        return upload


def wait_for(
    probe: Callable[[], Any], *, timeout: float, interval: float = 0.5, what: str = "condition"
) -> Any:
    """Poll ``probe`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"{what} not reached within {timeout:.0f} s (last: {last!r})")
