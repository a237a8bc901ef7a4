"""The lifecycle's last resort: a status write that keeps failing (not on its condition) after all its
retries must not leave the job QUEUED-holding-a-slot or RUNNING. Numbered mock attempts exhaust the
retries (the next, real, attempt would succeed); the test asserts the path, the record, the slot and
the events."""

from __future__ import annotations

import pytest

from functions.common.events import JobCancelled, JobFailed, JobStarted
from tests.statemachines.conftest import Env

pytestmark = pytest.mark.statemachines

STARTED = [
    "Read lifecycle settings",
    "Mark job running",
    "Emit job started",
    "Plan the partitions",
    "Generate the partitions",
]
LAST_RESORT = [
    "Mark job failed after the lifecycle failed",
    "Release the job slot after the lifecycle failed",
    "Record the job slot released after the lifecycle failed",
    "Check whether the job was marked failed",
]
SERVER_ERROR = "DynamoDB.InternalServerErrorException"


def test_mark_running_failing_after_its_retries_fails_the_job_and_frees_its_slot(env: Env) -> None:
    job = env.create_job(num_records=2)

    execution = env.stack.wait(env.promote(job, test_case="MarkRunningKeepsFailing"))

    assert execution.status == "FAILED"
    assert execution.path == [
        "Read lifecycle settings",
        "Mark job running",
        "Give up marking the job running",
        *LAST_RESORT,
        "Emit job failed after the lifecycle failed",
        "Job lifecycle failed",
    ]
    assert [f["error"] for f in execution.failures("Mark job running")] == [SERVER_ERROR] * 6
    record = env.job(job["job_id"])
    assert (record["status"], record["error"]) == ("FAILED", "JobLifecycleFailed")
    assert record["user_status"] == f"{job['user_id']}#FAILED"
    assert record["cause"].startswith(
        f'Mark job running did not succeed after its retries: {{"Error":"{SERVER_ERROR}"'
    )
    assert "started_at" not in record
    assert record["completed_at"] <= record["slot_released_at"]
    assert job["job_id"] not in env.slot_holders()
    # The console shows the failure, with the same cause as the record.
    assert (execution.description["error"], execution.description["cause"]) == (
        "JobLifecycleFailed",
        record["cause"],
    )
    assert env.worker().receive(wait_seconds=0) is None  # no work item was sent
    events = env.events(job["job_id"], expected=1)
    assert events == [
        JobFailed(
            job_id=job["job_id"],
            user_id=job["user_id"],
            completed_at=record["completed_at"],
            error="JobLifecycleFailed",
            cause=record["cause"],
        )
    ]


def test_a_terminal_write_failing_after_its_retries_fails_the_job_and_frees_its_slot(env: Env) -> None:
    job = env.create_job(num_records=3)
    execution_arn = env.promote(job, test_case="MarkCompletedKeepsFailing")

    done = env.drive(execution_arn)
    execution = env.stack.wait(execution_arn)

    assert [outcome.reported for _, outcome in done] == ["success", "exported"]
    assert execution.status == "FAILED"
    assert execution.path == [
        *STARTED,
        "Export the job",
        "Mark job completed",
        "Give up marking the job completed",
        *LAST_RESORT,
        "Emit job failed after the lifecycle failed",
        "Job lifecycle failed",
    ]
    assert len(execution.failures("Mark job completed")) == 6
    record = env.job(job["job_id"])
    assert (record["status"], record["error"]) == ("FAILED", "JobLifecycleFailed")
    assert record["cause"].startswith("Mark job completed did not succeed after its retries: ")
    assert "result" not in record
    assert record["started_at"] <= record["completed_at"] <= record["slot_released_at"]
    assert job["job_id"] not in env.slot_holders()
    events = env.events(job["job_id"], expected=2)
    assert [type(e) for e in events] == [JobStarted, JobFailed]
    assert (events[1].error, events[1].completed_at) == ("JobLifecycleFailed", record["completed_at"])


def test_a_cancel_requested_queued_job_is_left_to_the_cancellation_and_its_slot_freed(env: Env) -> None:
    """Cancellation owns a QUEUED job with a request: the last resort frees the slot, writes no status."""
    job = env.create_job()
    env.claim(job)
    cancellation = env.stack.wait(env.request_cancellation(job))

    lifecycle = env.stack.wait(env.start_lifecycle(job, test_case="MarkRunningKeepsFailing"))

    assert cancellation.path[-1] == "Emit job cancelled"
    assert lifecycle.status == "FAILED"
    assert lifecycle.path == [
        "Read lifecycle settings",
        "Mark job running",
        "Give up marking the job running",
        *LAST_RESORT,
        "Job lifecycle failed",
    ]
    record = env.job(job["job_id"])
    assert (record["status"], record["error"]) == ("CANCELLED", "JobCancelled")
    assert "slot_released_at" in record
    assert job["job_id"] not in env.slot_holders()
    assert lifecycle.description["cause"].startswith("Mark job running did not succeed after its retries")
    assert [type(e) for e in env.events(job["job_id"], expected=1)] == [JobCancelled]


def test_a_slot_the_last_resort_cannot_release_stays_with_a_failed_job(env: Env) -> None:
    """The job is FAILED and the event emitted; no slot_released_at is written for a slot still held
    (the queue promoter frees the slot of a terminal job whose execution has ended)."""
    job = env.create_job(num_records=4)
    execution_arn = env.promote(job, test_case="MarkCancelledAndItsReleaseKeepFailing")
    env.stack.wait_for_state(execution_arn, "Generate the partitions")
    env.stack.wait(env.request_cancellation(job))  # before any batch: nothing to export

    done = env.drive(execution_arn)
    execution = env.stack.wait(execution_arn)

    assert [outcome.reported for _, outcome in done] == ["JobCancelled", "exported"]
    assert execution.status == "FAILED"
    assert execution.path == [
        *STARTED,
        "Export what the partitions committed",
        "Check whether anything was exported",
        "Choose the stop status",
        "Mark job cancelled",
        "Give up marking the job cancelled",
        "Mark job failed after the lifecycle failed",
        "Release the job slot after the lifecycle failed",
        "Check whether the job was marked failed",
        "Emit job failed after the lifecycle failed",
        "Job lifecycle failed",
    ]
    assert len(execution.failures("Release the job slot after the lifecycle failed")) == 11
    record = env.job(job["job_id"])
    assert (record["status"], record["error"]) == ("FAILED", "JobLifecycleFailed")
    assert record["cause"].startswith("Mark job cancelled did not succeed after its retries: ")
    assert "slot_released_at" not in record
    assert job["job_id"] in env.slot_holders()
    assert [type(e) for e in env.events(job["job_id"], expected=2)] == [JobStarted, JobFailed]


def test_when_marking_the_job_failed_fails_too_the_execution_says_so(env: Env) -> None:
    """The limit of the last resort: the job keeps its status and its slot, and the error names it."""
    job = env.create_job()

    execution = env.stack.wait(env.promote(job, test_case="MarkRunningAndTheLastResortKeepFailing"))

    assert execution.status == "FAILED"
    assert execution.path == [
        "Read lifecycle settings",
        "Mark job running",
        "Give up marking the job running",
        "Mark job failed after the lifecycle failed",
        "Job could not be marked failed",
    ]
    assert len(execution.failures("Mark job failed after the lifecycle failed")) == 11
    assert execution.description["error"] == "JobNotMarkedFailed"
    record = env.job(job["job_id"])
    assert record["status"] == "QUEUED"
    assert job["job_id"] in env.slot_holders()
    assert env.events(job["job_id"], expected=0, timeout=0.5) == []
