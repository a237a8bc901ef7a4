"""The job lifecycle state machine on MiniStack: exact state paths, the record, the slot, the events."""

from __future__ import annotations

import time

import pytest

from functions.common.events import JobBudgetExceeded, JobCompleted, JobFailed, JobStarted
from functions.worker.service import BUDGET_EXCEEDED
from tests.statemachines.conftest import HEARTBEAT_SECONDS, Env

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


def test_budget_flag_stops_the_worker_and_ends_the_job_budget_exceeded(env: Env) -> None:
    job = env.create_job(num_records=8)
    execution_arn = env.promote(job)

    # After the first batch the rolled-up cost reaches the budget: the rollup sets the flag.
    outcome = env.worker().run_once(between_batches=lambda batch: env.set_budget_exceeded(job["job_id"]))
    execution = env.stack.wait(execution_arn)

    assert execution.path == [*STARTED, "Mark job budget exceeded", *RELEASED, "Emit job budget exceeded"]
    assert (outcome.reported, outcome.batches_done) == (BUDGET_EXCEEDED, 1)
    record = env.job(job["job_id"])
    assert (record["status"], record["error"]) == ("BUDGET_EXCEEDED", BUDGET_EXCEEDED)
    assert record["user_status"] == f"{job['user_id']}#BUDGET_EXCEEDED"
    assert "result" not in record
    assert job["job_id"] not in env.slot_holders()
    events = env.events(job["job_id"], expected=2)
    assert [type(e) for e in events] == [JobStarted, JobBudgetExceeded]


def test_budget_flag_seen_when_the_token_is_recorded_stops_before_any_batch(env: Env) -> None:
    job = env.create_job(num_records=4)
    execution_arn = env.promote(job)
    env.stack.wait_for_state(execution_arn, "Send work item and wait for the worker")
    env.set_budget_exceeded(job["job_id"])

    outcome = env.worker().run_once()
    execution = env.stack.wait(execution_arn)

    assert (outcome.reported, outcome.batches_done) == (BUDGET_EXCEEDED, 0)
    assert execution.path == [*STARTED, "Mark job budget exceeded", *RELEASED, "Emit job budget exceeded"]


def test_worker_failure_ends_the_job_failed_with_error_and_cause(env: Env) -> None:
    job = env.create_job(num_records=6)
    execution_arn = env.promote(job)

    outcome = env.worker().run_once(fail_after_batches=1)
    execution = env.stack.wait(execution_arn)

    assert execution.path == [*STARTED, "Mark job failed", *RELEASED, "Emit job failed"]
    assert outcome.reported == "GenerationError"
    record = env.job(job["job_id"])
    assert (record["status"], record["error"]) == ("FAILED", "GenerationError")
    assert record["cause"] == "the model failed on batch 1"
    assert record["user_status"] == f"{job['user_id']}#FAILED"
    assert job["job_id"] not in env.slot_holders()
    events = env.events(job["job_id"], expected=2)
    assert [type(e) for e in events] == [JobStarted, JobFailed]
    assert (events[1].error, events[1].cause) == ("GenerationError", "the model failed on batch 1")


def test_missed_heartbeat_fails_the_job_and_a_late_answer_is_refused(env: Env) -> None:
    job = env.create_job(num_records=6)
    execution_arn = env.promote(job)
    worker = env.worker()
    received = worker.receive()
    assert received is not None
    item, _receipt = received

    # The worker records its token, writes one batch and heartbeats, then dies silently.
    outcome = worker.process(item, die_after_batches=1)
    started = time.monotonic()
    execution = env.stack.wait(execution_arn, timeout=HEARTBEAT_SECONDS + 15)

    assert outcome.reported == "died"
    assert time.monotonic() - started >= HEARTBEAT_SECONDS - 1  # it waited for the heartbeat interval
    assert execution.path == [*STARTED, "Mark job failed", *RELEASED, "Emit job failed"]
    record = env.job(job["job_id"])
    assert (record["status"], record["error"]) == ("FAILED", "States.HeartbeatTimeout")
    assert job["job_id"] not in env.slot_holders()
    # A worker that comes back to life cannot change the outcome.
    late = worker.process(item)
    assert late.reported == "nothing"  # the job is no longer RUNNING: its token is not even recorded
    assert env.job(job["job_id"])["status"] == "FAILED"


def test_transient_errors_are_retried_with_numbered_attempts(env: Env) -> None:
    job = env.create_job(num_records=3)
    execution_arn = env.promote(job, test_case="TransientErrors")

    outcome = env.worker().run_once()
    execution = env.stack.wait(execution_arn)

    assert outcome.reported == "success"
    assert execution.status == "SUCCEEDED"
    assert execution.path == [*STARTED, "Mark job completed", *RELEASED, "Emit job completed"]
    errors = {
        state: [f["error"] for f in execution.failures(state)]
        for state in (
            "Mark job running",
            "Emit job started",
            "Send work item and wait for the worker",
            "Mark job completed",
            "Release job slot",
            "Emit job completed",
        )
    }
    assert errors == {
        "Mark job running": ["DynamoDB.ProvisionedThroughputExceededException"] * 2,
        "Emit job started": ["EventBridge.InternalException"],
        "Send work item and wait for the worker": ["SQS.SdkClientException"],
        "Mark job completed": ["DynamoDB.InternalServerErrorException"],
        "Release job slot": ["DynamoDB.ProvisionedThroughputExceededException"] * 2,
        "Emit job completed": ["EventBridge.InternalException"],
    }
    record = env.job(job["job_id"])
    assert record["status"] == "COMPLETED"
    assert job["job_id"] not in env.slot_holders()
    # Exactly one work item was sent (the failed send attempt sent nothing) and one of each event.
    assert env.worker().receive(wait_seconds=0) is None
    assert [type(e) for e in env.events(job["job_id"], expected=2)] == [JobStarted, JobCompleted]


def test_a_second_lifecycle_start_for_the_same_job_is_refused_by_name(env: Env) -> None:
    job = env.create_job(num_records=2)
    execution_arn = env.promote(job)
    env.worker().run_once()
    env.stack.wait(execution_arn)

    with pytest.raises(env.client("stepfunctions").exceptions.ExecutionAlreadyExists):
        env.stack.start(
            "job_lifecycle", {"job_id": job["job_id"], "user_id": "someone-else"}, name=job["job_id"]
        )


def test_a_job_already_marked_running_by_a_lost_answer_is_resumed_not_left_running(env: Env) -> None:
    """A retried "Mark job running" whose first write succeeded (its answer lost) fails its condition:
    the job is RUNNING, as the lost write left it, and this execution goes on with it."""
    job = env.create_job(num_records=2)
    env.claim(job)
    lost_write_at = "2026-11-28T15:04:05.123Z"
    env.client("dynamodb").update_item(  # what the first attempt wrote before its answer was lost
        TableName=env.stack.jobs_table,
        Key={"job_id": {"S": job["job_id"]}},
        UpdateExpression=(
            "SET #status = :running, user_status = :user_status, started_at = :at, updated_at = :at"
        ),
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={
            ":running": {"S": "RUNNING"},
            ":user_status": {"S": f"{job['user_id']}#RUNNING"},
            ":at": {"S": lost_write_at},
        },
    )
    execution_arn = env.start_lifecycle(job)

    outcome = env.worker().run_once()
    execution = env.stack.wait(execution_arn)

    assert outcome.reported == "success"
    assert execution.path == [
        "Read lifecycle settings",
        "Mark job running",
        "Resume the job this execution already marked running",
        *STARTED[2:],
        "Mark job completed",
        *RELEASED,
        "Emit job completed",
    ]
    record = env.job(job["job_id"])
    assert (record["status"], record["started_at"]) == ("COMPLETED", lost_write_at)
    assert job["job_id"] not in env.slot_holders()
    events = env.events(job["job_id"], expected=2)
    assert [type(e) for e in events] == [JobStarted, JobCompleted]
    assert events[0].started_at == lost_write_at
