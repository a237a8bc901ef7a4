"""Helpers for the local runtime's unit tests: recorded samples, runtime.json, a health endpoint.

No emulator runs here. Where the CLI must see a *running* runtime, ``health_endpoint`` serves
``GET /_ministack/health`` (the one request ``running_runtime`` makes) from a plain
``python -m http.server`` subprocess whose directory is named after MiniStack, so its command line
also passes the leftover-process check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from local.emulator import HOST, free_port, is_healthy
from local.runtime.state import RuntimeInfo
from tests.conftest import EVENTS_DIR

REPO = Path(__file__).resolve().parents[3]


def load_history(name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A recorded execution from tests/events/<name>.json: (describe_execution, history events).

    Recorded from MiniStack with the real lifecycle ASL; timestamps become datetimes, as boto3 returns.
    """
    recorded = json.loads((EVENTS_DIR / f"{name}.json").read_text())
    described = dict(recorded["execution"])
    for key in ("startDate", "stopDate"):
        if key in described:
            described[key] = datetime.fromisoformat(described[key])
    events = [
        {**event, "timestamp": datetime.fromisoformat(event["timestamp"])} for event in recorded["events"]
    ]
    return described, events


def bus_events() -> list[dict[str, Any]]:
    """Sample events as the capture queue delivers them (tests/events/bus_events.json)."""
    return list(json.loads((EVENTS_DIR / "bus_events.json").read_text()))


def append_events(path: Path, events: list[dict[str, Any]]) -> None:
    """Append events the way EventDrain writes them: one compact JSON object per line."""
    with open(path, "a") as sink:
        for event in events:
            sink.write(json.dumps(event, separators=(",", ":")) + "\n")


def runtime_info(state_dir: Path, *, port: int, pid: int, **extra: Any) -> RuntimeInfo:
    return RuntimeInfo(
        state_dir=state_dir,
        port=port,
        pid=pid,
        api_url=f"http://{HOST}:{port}/_aws/execute-api/abc123",
        api_id="abc123",
        user_pool_id="us-east-1_pool",
        user_pool_client_id="client",
        **extra,
    )


def dead_pid() -> int:
    """The pid of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@dataclass
class HealthEndpoint:
    port: int
    process: subprocess.Popen[bytes]


@pytest.fixture
def health_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HealthEndpoint]:
    root = tmp_path_factory.mktemp("ministack-health")
    (root / "_ministack").mkdir()
    (root / "_ministack" / "health").write_text('{"status": "ok"}')
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", HOST, "--directory", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not is_healthy(f"http://{HOST}:{port}"):
            assert process.poll() is None, "the health endpoint exited"
            assert time.monotonic() < deadline, "the health endpoint did not answer within 10 s"
            time.sleep(0.05)
        yield HealthEndpoint(port, process)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def running_state_dir(tmp_path: Path, health_endpoint: HealthEndpoint) -> Path:
    """A state dir whose runtime.json names a live process (this one) and a healthy endpoint."""
    runtime_info(tmp_path, port=health_endpoint.port, pid=os.getpid()).save()
    return tmp_path
