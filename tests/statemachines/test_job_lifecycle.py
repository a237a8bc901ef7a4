"""The job lifecycle state machine on MiniStack: exact state paths, the record, the slot, the events."""

from __future__ import annotations

import pytest

from functions.common.events import JobCompleted, JobStarted
from tests.statemachines.conftest import Env

pytestmark = pytest.mark.statemachines

STARTED = [
    "Read lifecycle settings",
    "Mark job running",
    "Emit job started",
    "Send work item and wait for the worker",
]
RELEASED = ["Release job slot", "Record job slot released", "Choose the terminal event"]


def test_happy_path_completes_the_job_and_releases_its_slot(env: Env) -> None:
    job = env.create_job(num_records=5)
    execution_arn = env.promote(job)

    outcome = env.worker().run_once()
    execution = env.stack.wait(execution_arn)

    assert execution.status == "SUCCEEDED"
    assert execution.path == [*STARTED, "Mark job completed", *RELEASED, "Emit job completed"]
    assert (outcome.reported, outcome.batches_done, outcome.records_generated) == ("success", 3, 5)
    record = env.job(job["job_id"])
    assert record["status"] == "COMPLETED"
    assert record["user_status"] == f"{job['user_id']}#COMPLETED"
    assert record["result"] == {"records": 5, "output_key": f"jobs/{job['job_id']}/outputs/"}
    assert record["started_at"] <= record["completed_at"] <= record["slot_released_at"]
    assert job["job_id"] not in env.slot_holders()
    events = env.events(job["job_id"], expected=2)
    assert [type(e) for e in events] == [JobStarted, JobCompleted]
    assert events[1].records_generated == 5
    assert events[1].completed_at == record["completed_at"]
