"""The local runtime (``plot-palette local``) started once per session, driven over real HTTP.

The fixture runs the real CLI in a subprocess, exactly what ``make local`` runs, on a free loopback
port with a temporary state dir, ``max_running_jobs=3`` (the load test's limit), partitions of 10
records (``partition_records=10``, so a job of a few dozen records is fanned out) and three offline
generation workers; it stops it with SIGTERM at the end. Every e2e test module is in the ``e2e``
xdist group, so one worker runs them all against this one runtime.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from local.emulator import free_port
from local.runtime.state import RuntimeInfo, RuntimeNotRunning, ready_runtime
from tests.support.remote import HttpClient as Client

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 300.0  # synth (~10-30 s on 2 shared cores) + deploy + workers
MAX_RUNNING_JOBS = 3
WORKERS = 3
PARTITION_RECORDS = 10  # one batch (the default batch_size 10) per partition


def cli(state_dir: Path, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``plot-palette ARGS --state-dir DIR`` (the real console entry point)."""
    return subprocess.run(
        [sys.executable, "-m", "local.cli", *args, "--state-dir", str(state_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Runtime:
    state_dir: Path
    info: RuntimeInfo
    process: subprocess.Popen[bytes]

    @property
    def api_url(self) -> str:
        return self.info.api_url

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return cli(self.state_dir, *args, timeout=timeout)

    def token(self, user: str) -> str:
        answer = self.cli("token", user)
        assert answer.returncode == 0, answer.stderr
        return answer.stdout.strip()

    def client(self, user: str | None) -> Client:
        return Client(self.api_url, self.token(user) if user else None)


def start_local(
    state_dir: Path, log: IO[bytes], *args: str, port: int, new_session: bool = False, **env: str
) -> subprocess.Popen[bytes]:
    """``plot-palette local --state-dir DIR --port N ARGS`` in a subprocess (the real console entry point).

    ``new_session``: in its own process group, so a test can kill -9 the whole group.
    """
    environ = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, **env}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "local.cli",
            "local",
            "--state-dir",
            str(state_dir),
            "--port",
            str(port),
            *args,
        ],
        cwd=REPO,
        env=environ,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=new_session,
    )


def stop_local(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a clean stop, as Ctrl-C), then SIGKILL if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    with shared_runtime(tmp_path_factory) as started:
        yield started


_SHARED: dict[str, Any] = {"runtime": None, "users": 0}


@contextmanager
def shared_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """One local runtime per test process, however many tiers use it (e2e and the black-box suite
    in tests/blackbox share it); it stops when the last user is done."""
    if _SHARED["runtime"] is None:
        _SHARED["stack"] = ExitStack()
        _SHARED["runtime"] = _SHARED["stack"].enter_context(_start_runtime(tmp_path_factory))
    _SHARED["users"] += 1
    try:
        yield _SHARED["runtime"]
    finally:
        _SHARED["users"] -= 1
        if _SHARED["users"] == 0:
            stack, _SHARED["runtime"] = _SHARED.pop("stack"), None
            stack.close()


@contextmanager
def local_runtime(
    state_dir: Path,
    log_path: Path,
    *args: str,
    port: int | None = None,
    new_session: bool = False,
    **env: str,
) -> Iterator[Runtime]:
    """``plot-palette local`` on ``state_dir``, once ready; stopped with SIGTERM on exit (nothing to
    do if the test killed it). The log is appended to, so a restart on the same dir keeps one log."""
    with open(log_path, "ab") as log:
        process = start_local(state_dir, log, *args, port=port or free_port(), new_session=new_session, **env)
        try:
            info = wait_until_ready(state_dir, process, log_path)
            yield Runtime(state_dir=state_dir, info=info, process=process)
        finally:
            stop_local(process)


@contextmanager
def _start_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    state_dir = tmp_path_factory.mktemp("plot-palette")
    # The load test's one user may use every slot: it checks the global limit, not fair share.
    args = (
        *("--workers", str(WORKERS)),
        *("-c", f"max_running_jobs={MAX_RUNNING_JOBS}"),
        *("-c", f"max_running_jobs_per_user={MAX_RUNNING_JOBS}"),
        *("-c", f"partition_records={PARTITION_RECORDS}"),
    )
    # The workers log each work item they processed at INFO (tests read which worker did what).
    log_path = state_dir.parent / "plot-palette-local.log"
    with local_runtime(state_dir, log_path, *args, POWERTOOLS_LOG_LEVEL="INFO") as started:
        yield started


def wait_until_ready(state_dir: Path, process: subprocess.Popen[bytes], log_path: Path) -> RuntimeInfo:
    """Until runtime.json says the start finished and the emulator answers its health check."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"plot-palette local exited with {process.returncode}:\n{log_path.read_text()[-3000:]}"
            )
        try:
            return ready_runtime(state_dir)
        except RuntimeNotRunning:
            time.sleep(0.5)
    pytest.fail(f"plot-palette local not ready within {START_TIMEOUT:.0f} s:\n{log_path.read_text()[-3000:]}")


# ----------------------------------------------------------------------------- API steps used by tests

SEED_RECORDS = [{"author": {"name": f"Author {i}", "genre": "mystery"}} for i in range(5)]
TEMPLATE = {
    "name": "Author bios",
    "description": "e2e",
    "template_definition": {
        "steps": [
            {"id": "bio", "prompt": "Write a short bio of {{ author.name }}, a {{ author.genre }} writer."},
            {"id": "tagline", "prompt": "A tagline for: {{ steps.bio.output }}"},
        ]
    },
}


def create_template(client: Client) -> str:
    answer = client.post("/templates", json=TEMPLATE)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["template_id"])


def upload_seed(
    client: Client, name: str = "authors.jsonl", records: list[dict[str, Any]] | None = None
) -> str:
    """Upload ``records`` (the five ``SEED_RECORDS`` by default) as JSON Lines through a presigned
    URL; answers the S3 key."""
    body = "".join(json.dumps(record) + "\n" for record in (records or SEED_RECORDS)).encode()
    return str(client.upload(name, body)["s3_key"])


def create_job(client: Client, template_id: str, seed_key: str, num_records: int, **extra: Any) -> str:
    body = {
        "template_id": template_id,
        "seed_data_path": seed_key,
        "budget_limit": "50",
        "output_format": "JSONL",
        "num_records": num_records,
        **extra,
    }
    answer = client.post("/jobs", json=body)
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "QUEUED"
    return str(answer.json()["job_id"])
