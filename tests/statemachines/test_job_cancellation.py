"""The cancellation state machine racing the lifecycle at every moment a request can land."""

from __future__ import annotations

import pytest

from functions.common.events import JobCancelled, JobCompleted, JobStarted
from functions.worker.service import JOB_CANCELLED
from tests.statemachines.conftest import Env

pytestmark = pytest.mark.statemachines

READ = ["Read the cancellation request", "Read the job", "Check the job's status"]
LIFECYCLE_STARTED = [
    "Read lifecycle settings",
    "Mark job running",
    "Emit job started",
    "Send work item and wait for the worker",
]
LIFECYCLE_CANCELLED = [
    *LIFECYCLE_STARTED,
    "Mark job cancelled",
    "Release job slot",
    "Record job slot released",
    "Choose the terminal event",
    "Emit job cancelled",
]


def test_cancel_while_queued_dequeues_and_cancels_the_job(env: Env) -> None:
    job = env.create_job()

    execution = env.stack.wait(env.request_cancellation(job))

    assert execution.path == [
        *READ,
        "Mark queued job cancelled",
        "Remove job from queue",
        "Emit job cancelled",
    ]
    record = env.job(job["job_id"])
    assert (record["status"], record["error"]) == ("CANCELLED", JOB_CANCELLED)
    assert record["user_status"] == f"{job['user_id']}#CANCELLED"
    assert record["completed_at"] >= record["cancel_requested_at"]
    assert not env.queue_item_exists(job)
    events = env.events(job["job_id"], expected=1)
    assert [type(e) for e in events] == [JobCancelled]
    assert events[0].completed_at == record["completed_at"]


def test_cancel_between_promotion_and_start_ends_cancelled_and_frees_the_slot(env: Env) -> None:
    job = env.create_job()
    env.claim(job)  # the promoter claimed a slot; its StartExecution has not happened yet

    cancellation = env.stack.wait(env.request_cancellation(job))
    lifecycle = env.stack.wait(env.start_lifecycle(job))

    assert cancellation.path == [
        *READ,
        "Mark queued job cancelled",
        "Remove job from queue",
        "Emit job cancelled",
    ]
    assert lifecycle.path == [
        "Read lifecycle settings",
        "Mark job running",
        "Resume the job this execution already marked running",  # not RUNNING: not this execution's
        "Release slot without a status change",
        "Record slot released without a status change",
        "Job status was not changed by this execution",
    ]
    record = env.job(job["job_id"])
    assert record["status"] == "CANCELLED"
    assert "started_at" not in record
    assert "slot_released_at" in record
    assert job["job_id"] not in env.slot_holders()
    assert [type(e) for e in env.events(job["job_id"], expected=1)] == [JobCancelled]


def test_cancel_before_the_worker_records_its_token_is_seen_by_the_worker(env: Env) -> None:
    job = env.create_job(num_records=6)
    lifecycle_arn = env.promote(job)
    worker = env.worker()
    received = worker.receive()
    assert received is not None
    item, _receipt = received

    cancellation = env.stack.wait(env.request_cancellation(job))
    outcome = worker.process(item)
    lifecycle = env.stack.wait(lifecycle_arn)

    assert cancellation.path == [*READ, "Leave the cancellation to the worker"]
    assert (outcome.reported, outcome.batches_done) == (JOB_CANCELLED, 0)
    assert lifecycle.path == LIFECYCLE_CANCELLED
    assert env.job(job["job_id"])["status"] == "CANCELLED"
    assert job["job_id"] not in env.slot_holders()
    assert [type(e) for e in env.events(job["job_id"], expected=2)] == [JobStarted, JobCancelled]


@pytest.mark.parametrize("test_case", [None, "TransientErrors"])
def test_cancel_while_running_fails_the_waiting_task(env: Env, test_case: str | None) -> None:
    job = env.create_job(num_records=10)
    lifecycle_arn = env.promote(job)
    cancellations: list[str] = []

    def cancel_after_first_batch(batch: int) -> None:
        if batch == 0:
            cancellations.append(env.request_cancellation(job, test_case=test_case))
            env.stack.wait(cancellations[0])

    outcome = env.worker().run_once(between_batches=cancel_after_first_batch)
    lifecycle = env.stack.wait(lifecycle_arn)
    cancellation = env.stack.wait(cancellations[0])

    assert cancellation.path == [*READ, "Fail the worker's task", "Worker task failed with JobCancelled"]
    assert lifecycle.path == LIFECYCLE_CANCELLED
    # The worker stops within one batch; its own JobCancelled report comes too late and is refused.
    assert (outcome.reported, outcome.batches_done, outcome.accepted) == (JOB_CANCELLED, 1, False)
    record = env.job(job["job_id"])
    assert (record["status"], record["error"]) == ("CANCELLED", JOB_CANCELLED)
    assert record["cause"].startswith("Cancellation requested at ")
    assert job["job_id"] not in env.slot_holders()
    assert [type(e) for e in env.events(job["job_id"], expected=2)] == [JobStarted, JobCancelled]
    if test_case:
        assert [f["error"] for f in cancellation.failures("Read the job")] == [
            "DynamoDB.InternalServerErrorException"
        ]
        assert [f["error"] for f in cancellation.failures("Fail the worker's task")] == [
            "Sfn.ThrottlingException"
        ]


def test_cancel_after_completion_changes_nothing(env: Env) -> None:
    job = env.create_job(num_records=2)
    lifecycle_arn = env.promote(job)
    env.worker().run_once()
    env.stack.wait(lifecycle_arn)
    completed = env.job(job["job_id"])

    # The request raced completion: it was accepted while RUNNING, its event is handled afterwards.
    execution = env.stack.wait(
        env.stack.start(
            "job_cancellation",
            {
                "detail": {
                    "job_id": job["job_id"],
                    "user_id": job["user_id"],
                    "requested_at": completed["started_at"],
                }
            },
        )
    )

    assert execution.path == [*READ, "Job already ended"]
    assert env.job(job["job_id"]) == completed
    assert [type(e) for e in env.events(job["job_id"], expected=2)] == [JobStarted, JobCompleted]


def test_cancel_landing_right_after_the_worker_succeeded_has_one_winner(env: Env) -> None:
    job = env.create_job(num_records=2)
    lifecycle_arn = env.promote(job)
    outcome = env.worker().run_once()
    assert outcome.reported == "success"

    # The lifecycle may or may not have written COMPLETED yet: the API accepts the request only while
    # the job is RUNNING, and the task token is already spent either way.
    try:
        cancellation = env.stack.wait(env.request_cancellation(job))
    except env.client("dynamodb").exceptions.ConditionalCheckFailedException:
        cancellation = None  # the API answered 409: the job had already completed
    lifecycle = env.stack.wait(lifecycle_arn)

    if cancellation is not None:
        assert cancellation.path in (
            [*READ, "Fail the worker's task", "Worker task already finished"],
            [*READ, "Job already ended"],
        )
    assert lifecycle.path[-2:] == ["Choose the terminal event", "Emit job completed"]
    assert env.job(job["job_id"])["status"] == "COMPLETED"
    assert [type(e) for e in env.events(job["job_id"], expected=2)] == [JobStarted, JobCompleted]
