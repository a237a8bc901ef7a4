"""A kill -9 of the whole local runtime loses at most the snapshot window (issue 13, item 5).

A second runtime of its own (the session runtime of conftest.py is not touched; its synthesized
assembly is reused to skip a synth) with a 2 s window: a template, an upload and a job are made,
the job completes, a long job starts, the test waits past the window, then SIGKILLs the runtime's
process group and the emulator's and workers' (each runs in its own session), and starts again on
the same state dir and port. Everything is there (the long job as it was: a job RUNNING at a crash
ends only once the reconciler re-drives it), the old token still works, and the restored system
runs a new job to completion.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from local.emulator import free_port
from local.runtime.state import RuntimeInfo, pid_alive
from local.runtime.synth import local_assembly
from tests.e2e.conftest import Client, Runtime, create_job, create_template, local_runtime, upload_seed
from tests.support.remote import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

WINDOW = 2


def _kill_9_everything(state_dir: Path, cli_pid: int) -> None:
    """SIGKILL the runtime's process group, then the emulator's and each worker's (own sessions)."""
    recorded = RuntimeInfo.load(state_dir)
    pids = [cli_pid, recorded.emulator_pid, *recorded.worker_pids]
    groups = {os.getpgid(pid) for pid in pids if pid and pid_alive(pid)}
    for group in groups:
        os.killpg(group, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(pid and pid_alive(pid) for pid in pids[1:]) and time.monotonic() < deadline:
        time.sleep(0.1)


def _completed(client: Client, job_id: str, records: int, timeout: float = 120) -> dict[str, Any]:
    """The job once COMPLETED with its final count (the rollup may trail the status by a moment)."""

    def done() -> dict[str, Any] | None:
        job = client.get(f"/jobs/{job_id}").json()
        return job if job.get("status") == "COMPLETED" and job.get("records_generated") == records else None

    return dict(wait_for(done, timeout=timeout, what=f"job {job_id} COMPLETED with {records} records"))


def test_a_kill_9_of_the_runtime_keeps_what_was_made_before_the_window(
    runtime: Runtime, tmp_path: Path
) -> None:
    assembly = str(local_assembly(runtime.state_dir / "cdk.out"))
    state_dir, port, log_path = tmp_path / "state", free_port(), tmp_path / "local.log"
    state_dir.mkdir()
    args = ("--workers", "2", "--assembly", assembly)  # one may be busy with the long job
    snapshots = {"PLOT_PALETTE_SNAPSHOT_SECONDS": str(WINDOW)}
    with local_runtime(state_dir, log_path, *args, port=port, new_session=True, **snapshots) as crash:
        try:
            carla = crash.client("crash-carla")
            template_id = create_template(carla)
            seed_key = upload_seed(carla)
            job_id = create_job(carla, template_id, seed_key, num_records=3)
            _completed(carla, job_id, 3)
            # A long job, still running when the crash comes.
            long_job = create_job(carla, template_id, seed_key, num_records=100_000, budget_limit="1000")
            time.sleep(WINDOW * 2)  # the cost rollup may trail the count a little
            before = carla.get(f"/jobs/{job_id}").json()
            time.sleep(WINDOW * 2.5)  # past the window: a snapshot holds all of it
        finally:
            _kill_9_everything(state_dir, crash.process.pid)

    with local_runtime(state_dir, log_path, *args, port=port, new_session=True, **snapshots):
        # The same user, with the token issued before the crash (the pool's keys are state too).
        assert carla.get(f"/templates/{template_id}").status_code == 200
        after = carla.get(f"/jobs/{job_id}").json()
        assert after == before
        assert (after["status"], after["records_generated"]) == ("COMPLETED", 3)
        download = carla.get(f"/jobs/{job_id}/download")
        assert download.status_code == 200, download.text
        exported = requests.get(download.json()["download_url"], timeout=30)
        assert exported.status_code == 200
        assert len(exported.content.splitlines()) == 3
        validated = carla.post("/seed-data/validate", json={"s3_key": seed_key, "template_id": template_id})
        assert validated.status_code == 200, validated.text
        assert validated.json()["valid"] is True

        # The job in flight at the crash is there; it ends once the reconciler re-drives it
        # (the emulator failed its execution on restart: States.ServiceRestart).
        in_flight = carla.get(f"/jobs/{long_job}").json()
        assert in_flight["status"] in {"QUEUED", "RUNNING"}
        assert (in_flight["template_id"], in_flight["num_records"]) == (template_id, 100_000)

        # The restored stack runs: a new job on the old template and upload finishes.
        again = create_job(carla, template_id, seed_key, num_records=2)
        _completed(carla, again, 2)
