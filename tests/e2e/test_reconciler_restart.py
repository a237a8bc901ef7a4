"""Jobs RUNNING across a restart of ``plot-palette local`` finish with exactly ``num_records`` records.

A runtime of its own (its own state dir): two jobs run and one waits when it is stopped (SIGTERM:
the emulator saves its state, and marks the running executions FAILED on the next start); the
same state dir is started again. Nothing but the reconciler, fired by the emulator's EventBridge
schedule, can move them on: it re-drives each RUNNING job (the worker resumes from its checkpoint)
and promotes the waiting one. Each export then holds exactly ``num_records`` records.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.conftest import Client, Runtime, create_job, create_template, local_runtime, upload_seed
from tests.support.remote import TERMINAL, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

NUM_RECORDS = 3000
FINISH_SECONDS = 420.0


def _runtime(state_dir: Path, log_name: str) -> AbstractContextManager[Runtime]:
    """``plot-palette local`` on ``state_dir`` with two slots (both usable by one user)."""
    args = ("--workers", "2", "-c", "max_running_jobs=2", "-c", "max_running_jobs_per_user=2")
    return local_runtime(state_dir, state_dir.parent / log_name, *args)


def _job(client: Client, job_id: str) -> dict[str, Any]:
    answer = client.get(f"/jobs/{job_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _exported_records(client: Client, job_id: str) -> int:
    answer = client.get(f"/jobs/{job_id}/download")
    assert answer.status_code == 200, answer.text
    export = requests.get(answer.json()["download_url"], timeout=60)
    assert export.status_code == 200
    return sum(1 for line in export.text.splitlines() if line.strip())


def test_jobs_running_across_a_restart_finish_with_exactly_num_records(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    state_dir = tmp_path_factory.mktemp("restart") / "state"
    with _runtime(state_dir, "restart-first.log") as first:
        client = first.client("restart-user")
        template_id, seed_key = create_template(client), upload_seed(client)
        running = [create_job(client, template_id, seed_key, num_records=NUM_RECORDS) for _ in range(2)]
        waiting = create_job(client, template_id, seed_key, num_records=20)
        wait_for(
            lambda: all(
                _job(client, j)["status"] == "RUNNING" and _job(client, j)["records_generated"] > 0
                for j in running
            ),
            timeout=240,
            what="both jobs running with progress",
        )
        before = {j: _job(client, j) for j in [*running, waiting]}
    assert [before[j]["status"] for j in running] == ["RUNNING", "RUNNING"]
    assert all(before[j]["records_generated"] < NUM_RECORDS for j in running)
    assert before[waiting]["status"] == "QUEUED"

    with _runtime(state_dir, "restart-second.log") as second:
        client = second.client("restart-user")

        def all_finished() -> dict[str, dict[str, Any]] | None:
            jobs = {j: _job(client, j) for j in [*running, waiting]}
            return jobs if all(job["status"] in TERMINAL for job in jobs.values()) else None

        finished = wait_for(
            all_finished, timeout=FINISH_SECONDS, interval=2, what="every job finished after the restart"
        )
        for job_id in running:
            job = finished[job_id]
            assert job["status"] == "COMPLETED", job
            assert job["records_generated"] == NUM_RECORDS
            assert _exported_records(client, job_id) == NUM_RECORDS
        assert finished[waiting]["status"] == "COMPLETED"
        assert _exported_records(client, waiting) == 20
