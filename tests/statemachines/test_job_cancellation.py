"""The cancellation state machine racing the lifecycle at every moment a request can land."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from functions.common.events import JobCancelled, JobCompleted, JobStarted
from tests.statemachines.conftest import Env
from tests.support.lifecycle_worker import WorkOutcome

pytestmark = pytest.mark.statemachines

READ = ["Read the cancellation request", "Read the job", "Check the job's status"]
LIFECYCLE_STARTED = [
    "Read lifecycle settings",
    "Mark job running",
    "Emit job started",
    "Plan the partitions",
    "Generate the partitions",
]
RELEASED_CANCELLED = [
    "Release job slot",
    "Record job slot released",
    "Choose the terminal event",
    "Emit job cancelled",
]
# Cancelled before any batch committed: nothing to export.
LIFECYCLE_CANCELLED = [
    *LIFECYCLE_STARTED,
    "Export what the partitions committed",
    "Check whether anything was exported",
    "Choose the stop status",
    "Mark job cancelled",
    *RELEASED_CANCELLED,
]
LIFECYCLE_CANCELLED_WITH_EXPORT = [
    *LIFECYCLE_STARTED,
    "Export what the partitions committed",
    "Check whether anything was exported",
    "Choose the stop status of the partial export",
    "Mark job cancelled with its partial export",
    *RELEASED_CANCELLED,
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
    assert (record["status"], record["error"]) == ("CANCELLED", "JobCancelled")
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


def test_cancel_before_the_workers_record_their_tokens_is_seen_by_every_partition(env: Env) -> None:
    job = env.create_job(num_records=6)  # two partitions
    lifecycle_arn = env.promote(job)
    worker = env.worker()
    received = worker.receive()
    assert received is not None
    item, _receipt = received

    cancellation = env.stack.wait(env.request_cancellation(job))
    first = worker.process(item)
    done = env.drive(lifecycle_arn)
    lifecycle = env.stack.wait(lifecycle_arn)

    assert cancellation.path == [*READ, "Leave the cancellation to the worker"]
    assert (first.reported, first.batches_done) == ("JobCancelled", 0)
    assert [(i["kind"], o.reported, o.batches_done) for i, o in done] == [
        ("partition", "JobCancelled", 0),
        ("export", "exported", 0),
    ]
    assert lifecycle.path == LIFECYCLE_CANCELLED
    record = env.job(job["job_id"])
    assert record["status"] == "CANCELLED"
    assert "result" not in record
    assert job["job_id"] not in env.slot_holders()
    assert [type(e) for e in env.events(job["job_id"], expected=2)] == [JobStarted, JobCancelled]


@pytest.mark.parametrize("test_case", [None, "TransientErrors"])
def test_cancel_during_the_fan_out_reaches_every_running_partition(env: Env, test_case: str | None) -> None:
    """Both partitions are running when the request lands. The cancellation machine fails the last
    recorded task token (the Map ends), and every partition stops before its next batch: at most one
    batch per running partition after the request, and what committed is exported."""
    job = env.create_job(num_records=8)  # partitions [0, 2) and [2, 4)
    lifecycle_arn = env.promote(job)
    worker = env.worker()
    received = [worker.receive(), worker.receive()]
    both_committed = threading.Barrier(2, timeout=10)
    cancelled = threading.Barrier(2, timeout=20)
    cancellations: list[str] = []
    outcomes: list[WorkOutcome] = []

    def after_batch(batch: int) -> None:
        if both_committed.wait() == 0:  # one of the two requests the cancellation
            cancellations.append(env.request_cancellation(job, test_case=test_case))
            env.stack.wait(cancellations[0])
        cancelled.wait()

    def run(item: dict[str, Any], receipt: str) -> None:
        outcomes.append(env.worker().process(item, between_batches=after_batch))
        env.client("sqs").delete_message(QueueUrl=env.stack.work_queue_url, ReceiptHandle=receipt)

    threads = [threading.Thread(target=run, args=pair) for pair in received if pair]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    done = env.drive(lifecycle_arn)
    lifecycle = env.stack.wait(lifecycle_arn)
    cancellation = env.stack.wait(cancellations[0])

    assert cancellation.path == [*READ, "Fail the worker's task", "Worker task failed with JobCancelled"]
    assert sorted((o.reported, o.batches_done) for o in outcomes) == [
        ("JobCancelled", 1),
        ("JobCancelled", 1),
    ]
    # The failed token's partition reports too late: refused. (The other one's task may still wait.)
    assert [o.accepted for o in outcomes].count(False) >= 1
    assert [(i["kind"], i["partial"], o.reported) for i, o in done] == [("export", True, "exported")]
    assert lifecycle.path == LIFECYCLE_CANCELLED_WITH_EXPORT
    assert env.exported(job["job_id"]) == [0, 1, 4, 5]
    record = env.job(job["job_id"])
    assert (record["status"], record["error"]) == ("CANCELLED", "JobCancelled")
    # The cancellation machine's cause, or the other partition's own report: both are JobCancelled.
    assert record["cause"].startswith(("Cancellation requested at ", "stopped before batch "))
    assert (record["result"]["partial"], record["result"]["records"], record["records_generated"]) == (
        True,
        4,
        4,
    )
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
    env.drive(lifecycle_arn)
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
    assert env.worker().run_once().reported == "success"  # the one partition
    assert env.worker().run_once().reported == "exported"  # the export answered: COMPLETED follows

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


def test_partitions_not_yet_sent_when_the_job_is_cancelled_are_never_sent(env: Env) -> None:
    """One partition at a time (MaxConcurrency 1): the cancel lands during partition 0, and partitions
    1 and 2 read the job's flags and end without a work item.

    The deployment's heartbeat is long (SERIAL_HEARTBEAT_SECONDS): partition 0's worker waits for the
    whole cancellation between its batches, and with the 3 s heartbeat a loaded machine could time the
    task out first; its Retry would then send partition 0 again (a second work item, answered
    JobCancelled), and the cancel would not be what ended the Map."""
    job = env.create_job(num_records=12)  # partitions [0, 2), [2, 4), [4, 6)
    env.claim(job)
    lifecycle_arn = env.stack.start(
        "job_lifecycle_one_partition_at_a_time",
        {"job_id": job["job_id"], "user_id": job["user_id"]},
        name=job["job_id"],
    )
    cancellations: list[str] = []

    def cancel_after_first_batch(batch: int) -> None:
        if batch == 0:
            cancellations.append(env.request_cancellation(job))
            env.stack.wait(cancellations[0])

    first = env.worker().run_once(between_batches=cancel_after_first_batch)
    done = env.drive(lifecycle_arn)
    lifecycle = env.stack.wait(lifecycle_arn)

    # The cancel failed partition 0's live task (the Map ended there); its worker's own report came late.
    assert env.stack.wait(cancellations[0]).path == [
        *READ,
        "Fail the worker's task",
        "Worker task failed with JobCancelled",
    ]
    assert (first.reported, first.batches_done, first.accepted) == ("JobCancelled", 1, False)
    assert [(i["kind"], o.reported) for i, o in done] == [("export", "exported")]  # no other partition
    assert lifecycle.path == LIFECYCLE_CANCELLED_WITH_EXPORT
    assert env.deltas(job["job_id"]) == ["00000000"]
    assert env.exported(job["job_id"]) == [0, 1]
    record = env.job(job["job_id"])
    assert (record["status"], record["records_generated"]) == ("CANCELLED", 2)
