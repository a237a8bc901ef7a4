"""The job lifecycle state machine on MiniStack: exact state paths, the record, the slot, the events.

The stack runs partitions of two batches of two records (conftest: ``BATCH_SIZE``,
``PARTITION_RECORDS``), so a job of 5 records has batches 0..2 in partitions [0, 2) and [2, 3), and a
job of 8 records batches 0..3 in [0, 2) and [2, 4).
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Any

import pytest

from functions.common.events import JobBudgetExceeded, JobCancelled, JobCompleted, JobFailed, JobStarted
from tests.statemachines.conftest import BATCH_SIZE, HEARTBEAT_SECONDS, Env
from tests.support.lifecycle_worker import (
    BEDROCK_COST_PER_RECORD,
    FARGATE_COST_PER_BATCH,
    S3_COST_PER_BATCH,
    LifecycleWorker,
    WorkOutcome,
)

pytestmark = pytest.mark.statemachines

STARTED = [
    "Read lifecycle settings",
    "Mark job running",
    "Emit job started",
    "Plan the partitions",
    "Generate the partitions",
]
RELEASED = ["Release job slot", "Record job slot released", "Choose the terminal event"]
PARTIAL = [
    "Export what the partitions committed",
    "Check whether anything was exported",
    "Choose the stop status of the partial export",
]
NOTHING_EXPORTED = [
    "Export what the partitions committed",
    "Check whether anything was exported",
    "Choose the stop status",
]


def partitions(done: list[tuple[dict[str, Any], WorkOutcome]]) -> list[tuple[int, int, int, str]]:
    """(partition, first_batch, end_batch, what the worker reported) of each partition item, sorted."""
    return sorted(
        (item["partition"], item["first_batch"], item["end_batch"], outcome.reported)
        for item, outcome in done
        if item["kind"] == "partition"
    )


def exports(done: list[tuple[dict[str, Any], WorkOutcome]]) -> list[tuple[bool, str]]:
    return [(item["partial"], outcome.reported) for item, outcome in done if item["kind"] == "export"]


def cost_of(batches: int, records: int) -> Decimal:
    """What the test worker's deltas of ``batches`` batches holding ``records`` records add up to."""
    return BEDROCK_COST_PER_RECORD * records + (FARGATE_COST_PER_BATCH + S3_COST_PER_BATCH) * batches


def test_every_partition_runs_then_the_export_joins_them_in_order_and_completes_the_job(env: Env) -> None:
    job = env.create_job(num_records=5)
    execution_arn = env.promote(job)

    done = env.drive(execution_arn)
    execution = env.stack.wait(execution_arn)

    assert execution.status == "SUCCEEDED"
    assert execution.path == [
        *STARTED,
        "Export the job",
        "Mark job completed",
        *RELEASED,
        "Emit job completed",
    ]
    assert partitions(done) == [(0, 0, 2, "success"), (1, 2, 3, "success")]
    assert exports(done) == [(False, "exported")]
    assert all(item["task_size"] == "medium" and item["batch_size"] == BATCH_SIZE for item, _ in done)
    assert env.exported(job["job_id"]) == [0, 1, 2, 3, 4]
    record = env.job(job["job_id"])
    assert record["status"] == "COMPLETED"
    assert record["user_status"] == f"{job['user_id']}#COMPLETED"
    # Written with the status, from the export's answer: the first COMPLETED read is final.
    assert record["result"] == {
        "records": 5,
        "output_key": LifecycleWorker.export_key(job["job_id"]),
        "files": 1,
        "partial": False,
    }
    assert record["records_generated"] == 5
    assert record["cost"]["total"] == cost_of(batches=3, records=5)
    assert record["tokens_used"] == 5 * 500
    assert record["totals_final_at"] == record["completed_at"]
    assert record["started_at"] <= record["completed_at"] <= record["slot_released_at"]
    assert job["job_id"] not in env.slot_holders()
    events = env.events(job["job_id"], expected=2)
    assert [type(e) for e in events] == [JobStarted, JobCompleted]
    assert events[1].records_generated == 5


def test_a_job_of_one_partition_takes_the_same_path(env: Env) -> None:
    job = env.create_job(num_records=3, task_size=None)  # a job from before task_size: medium
    execution_arn = env.promote(job)

    done = env.drive(execution_arn)
    execution = env.stack.wait(execution_arn)

    assert execution.path == [
        *STARTED,
        "Export the job",
        "Mark job completed",
        *RELEASED,
        "Emit job completed",
    ]
    assert partitions(done) == [(0, 0, 2, "success")]
    assert env.exported(job["job_id"]) == [0, 1, 2]


def test_a_failed_partition_is_retried_alone_and_the_job_completes(env: Env) -> None:
    """Partition 1's first worker commits one batch, then dies (no heartbeat): the job is read again and
    only partition 1 is sent again, with the same range, and the redone batch is not counted twice."""
    job = env.create_job(num_records=8)
    execution_arn = env.promote(job)
    attempts: dict[int, int] = {}

    def handle(worker: LifecycleWorker, item: dict[str, Any]) -> WorkOutcome:
        if item["kind"] == "partition":
            attempts[item["partition"]] = attempts.get(item["partition"], 0) + 1
            if item["partition"] == 1 and attempts[1] == 1:
                return worker.process(item, die_after_batches=1)
        return worker.process(item)

    done = env.drive(execution_arn, handle)
    execution = env.stack.wait(execution_arn)

    assert execution.path == [
        *STARTED,
        "Export the job",
        "Mark job completed",
        *RELEASED,
        "Emit job completed",
    ]
    assert partitions(done) == [(0, 0, 2, "success"), (1, 2, 4, "died"), (1, 2, 4, "success")]
    assert [f["error"] for f in execution.failures("Generate the partitions")] == ["States.HeartbeatTimeout"]
    assert env.deltas(job["job_id"]) == ["00000000", "00000001", "00000002", "00000003"]
    assert env.exported(job["job_id"]) == list(range(8))
    record = env.job(job["job_id"])
    assert (record["status"], record["records_generated"]) == ("COMPLETED", 8)
    assert record["cost"]["total"] == cost_of(batches=4, records=8)


def test_a_partition_whose_worker_died_is_not_sent_again_once_the_job_is_cancelled(env: Env) -> None:
    """The worker dies right after it received the partition, before recording its task token; the
    cancellation lands meanwhile and finds no token to fail, so it is left to the worker. When the heartbeat
    times out, the lifecycle reads the job before sending the partition again, sees the request and ends
    the job CANCELLED: no second work item reaches the queue (before, the retry sent one, and its worker
    only recorded the token to find the job cancelled)."""
    job = env.create_job(num_records=4)  # one partition of two batches
    execution_arn = env.promote(job)
    cancellations: list[Any] = []

    def handle(worker: LifecycleWorker, item: dict[str, Any]) -> WorkOutcome:
        if item["kind"] == "partition" and not cancellations:
            cancellations.append(env.stack.wait(env.request_cancellation(job)))
            return WorkOutcome(item["job_id"], "died", 0, 0)
        return worker.process(item)

    done = env.drive(execution_arn, handle)
    execution = env.stack.wait(execution_arn)

    assert cancellations[0].path[-1] == "Leave the cancellation to the worker"
    assert partitions(done) == [(0, 0, 2, "died")]  # sent once, never again
    assert exports(done) == [(True, "exported")]  # asked, and found nothing committed
    assert env.worker().receive(wait_seconds=0) is None
    assert [f["error"] for f in execution.failures("Generate the partitions")] == ["States.HeartbeatTimeout"]
    assert execution.path == [
        *STARTED,
        *NOTHING_EXPORTED,
        "Mark job cancelled",
        *RELEASED,
        "Emit job cancelled",
    ]
    record = env.job(job["job_id"])
    assert (record["status"], record["error"]) == ("CANCELLED", "JobCancelled")
    assert "task_token" not in record  # no worker of this job ever held a task
    assert env.deltas(job["job_id"]) == []
    assert job["job_id"] not in env.slot_holders()
    assert [type(e) for e in env.events(job["job_id"], expected=2)] == [JobStarted, JobCancelled]


def test_a_partition_whose_worker_died_is_not_sent_again_once_the_budget_is_reached(env: Env) -> None:
    """The worker commits batch 0 and dies; the rollup of that batch's delta then reaches the budget. The
    lifecycle reads the job before sending the partition again and ends the job BUDGET_EXCEEDED with the
    committed batch exported, without a second work item."""
    job = env.create_job(num_records=4)  # one partition of two batches
    execution_arn = env.promote(job)

    def handle(worker: LifecycleWorker, item: dict[str, Any]) -> WorkOutcome:
        if item["kind"] == "partition":
            outcome = worker.process(item, die_after_batches=1)
            env.set_budget_exceeded(job["job_id"])  # the rollup of batch 0, after the worker died
            return outcome
        return worker.process(item)

    done = env.drive(execution_arn, handle)
    execution = env.stack.wait(execution_arn)

    assert partitions(done) == [(0, 0, 2, "died")]  # sent once, never again
    assert exports(done) == [(True, "exported")]
    assert env.worker().receive(wait_seconds=0) is None
    assert [f["error"] for f in execution.failures("Generate the partitions")] == ["States.HeartbeatTimeout"]
    assert execution.path == [
        *STARTED,
        *PARTIAL,
        "Mark job budget exceeded with its partial export",
        *RELEASED,
        "Emit job budget exceeded",
    ]
    assert env.deltas(job["job_id"]) == ["00000000"]
    assert env.exported(job["job_id"]) == [0, 1]
    record = env.job(job["job_id"])
    assert (record["status"], record["error"]) == ("BUDGET_EXCEEDED", "BudgetExceeded")
    assert record["records_generated"] == 2
    assert record["cost"]["total"] == cost_of(batches=1, records=2)


def test_a_partition_that_fails_for_good_ends_the_job_failed_with_the_committed_part(env: Env) -> None:
    job = env.create_job(num_records=8)
    execution_arn = env.promote(job)

    def handle(worker: LifecycleWorker, item: dict[str, Any]) -> WorkOutcome:
        if item["kind"] == "partition" and item["partition"] == 1:
            return worker.process(item, fail_after_batches=1)  # commits batch 2, then fails
        return worker.process(item)

    done = env.drive(execution_arn, handle)
    execution = env.stack.wait(execution_arn)

    assert execution.path == [
        *STARTED,
        *PARTIAL,
        "Mark job failed with its partial export",
        *RELEASED,
        "Emit job failed",
    ]
    assert partitions(done) == [(0, 0, 2, "success"), (1, 2, 4, "GenerationError")]  # not retried
    assert exports(done) == [(True, "exported")]
    assert env.exported(job["job_id"]) == [0, 1, 2, 3, 4, 5]
    record = env.job(job["job_id"])
    assert (record["status"], record["error"]) == ("FAILED", "GenerationError")
    assert record["result"]["partial"] is True
    assert record["result"]["records"] == record["records_generated"] == 6
    assert job["job_id"] not in env.slot_holders()
    events = env.events(job["job_id"], expected=2)
    assert [type(e) for e in events] == [JobStarted, JobFailed]


def test_the_budget_across_partitions_overshoots_by_at_most_one_batch_per_running_partition(env: Env) -> None:
    """Both partitions run at once. Each commits a batch; then the rolled-up cost reaches the budget (the
    rollup sets the flag) and each stops before its next batch: two batches past the budget, one per
    running partition, and the partial export holds exactly what was billed."""
    job = env.create_job(num_records=8)
    execution_arn = env.promote(job)
    worker = env.worker()
    items = [worker.receive(), worker.receive()]  # both partitions were sent (concurrency 10)
    both_committed = threading.Barrier(2, timeout=10)
    flagged = threading.Barrier(2, timeout=10)
    outcomes: list[WorkOutcome] = []

    def after_batch(_batch: int) -> None:
        both_committed.wait()
        env.set_budget_exceeded(job["job_id"])
        flagged.wait()

    def run(item: dict[str, Any], receipt: str) -> None:
        outcomes.append(env.worker().process(item, between_batches=after_batch))
        env.client("sqs").delete_message(QueueUrl=env.stack.work_queue_url, ReceiptHandle=receipt)

    threads = [threading.Thread(target=run, args=received) for received in items if received]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    done = env.drive(execution_arn)
    execution = env.stack.wait(execution_arn)

    running_partitions = 2
    assert (
        sorted((o.reported, o.batches_done) for o in outcomes) == [("BudgetExceeded", 1)] * running_partitions
    )
    assert env.deltas(job["job_id"]) == ["00000000", "00000002"]  # one batch per running partition
    assert exports(done) == [(True, "exported")]
    assert execution.path == [
        *STARTED,
        *PARTIAL,
        "Mark job budget exceeded with its partial export",
        *RELEASED,
        "Emit job budget exceeded",
    ]
    assert env.exported(job["job_id"]) == [0, 1, 4, 5]
    record = env.job(job["job_id"])
    assert (record["status"], record["error"]) == ("BUDGET_EXCEEDED", "BudgetExceeded")
    assert record["result"] == {
        "records": 4,
        "output_key": LifecycleWorker.export_key(job["job_id"]),
        "files": 1,
        "partial": True,
    }
    assert record["records_generated"] == 4
    assert record["cost"]["total"] == cost_of(batches=2, records=4)
    events = env.events(job["job_id"], expected=2)
    assert [type(e) for e in events] == [JobStarted, JobBudgetExceeded]


def test_a_budget_reached_before_any_batch_ends_the_job_without_an_export(env: Env) -> None:
    job = env.create_job(num_records=4)
    execution_arn = env.promote(job)
    env.stack.wait_for_state(execution_arn, "Generate the partitions")
    env.set_budget_exceeded(job["job_id"])

    done = env.drive(execution_arn)
    execution = env.stack.wait(execution_arn)

    assert partitions(done) == [(0, 0, 2, "BudgetExceeded")]
    assert exports(done) == [(True, "exported")]  # asked, and found nothing committed
    assert execution.path == [
        *STARTED,
        *NOTHING_EXPORTED,
        "Mark job budget exceeded",
        *RELEASED,
        "Emit job budget exceeded",
    ]
    record = env.job(job["job_id"])
    assert record["status"] == "BUDGET_EXCEEDED"
    assert "result" not in record
    assert "totals_final_at" not in record


def test_a_dead_worker_is_retried_then_the_job_fails_and_a_late_answer_is_refused(env: Env) -> None:
    """A partition whose workers keep dying: its two retries also time out, the export of what
    committed has no worker either, and the job ends FAILED with the heartbeat timeout."""
    job = env.create_job(num_records=4)  # one partition of two batches
    execution_arn = env.promote(job)
    late: list[dict[str, Any]] = []

    def handle(worker: LifecycleWorker, item: dict[str, Any]) -> WorkOutcome:
        late.append(item)
        if item["kind"] == "export":
            return WorkOutcome(item["job_id"], "died", 0, 0)
        return worker.process(item, die_after_batches=1)

    started = time.monotonic()
    done = env.drive(execution_arn, handle, timeout=8 * HEARTBEAT_SECONDS + 30)
    execution = env.stack.wait(execution_arn)

    assert [item["kind"] for item, _ in done] == ["partition"] * 3 + ["export"] * 3
    assert time.monotonic() - started >= 6 * HEARTBEAT_SECONDS - 1
    assert execution.path == [
        *STARTED,
        "Export what the partitions committed",
        "Choose the stop status",
        "Mark job failed",
        *RELEASED,
        "Emit job failed",
    ]
    record = env.job(job["job_id"])
    assert (record["status"], record["error"]) == ("FAILED", "States.HeartbeatTimeout")
    # The last lost worker's own error and cause, carried out of the iteration by its Fail state.
    assert record["cause"] == f"No heartbeat within {HEARTBEAT_SECONDS:g} seconds"
    assert job["job_id"] not in env.slot_holders()
    # A worker that comes back to life cannot change the outcome.
    assert env.worker().process(late[0]).reported == "nothing"
    assert env.job(job["job_id"])["status"] == "FAILED"


def test_transient_errors_are_retried_with_numbered_attempts(env: Env) -> None:
    job = env.create_job(num_records=3)
    execution_arn = env.promote(job, test_case="TransientErrors")

    done = env.drive(execution_arn)
    execution = env.stack.wait(execution_arn)

    assert [outcome.reported for _, outcome in done] == ["success", "exported"]
    assert execution.status == "SUCCEEDED"
    assert execution.path == [
        *STARTED,
        "Export the job",
        "Mark job completed",
        *RELEASED,
        "Emit job completed",
    ]
    errors = {
        state: [f["error"] for f in execution.failures(state)]
        for state in (
            "Mark job running",
            "Emit job started",
            "Generate the partitions",
            "Export the job",
            "Mark job completed",
            "Release job slot",
            "Emit job completed",
        )
    }
    assert errors == {
        "Mark job running": ["DynamoDB.ProvisionedThroughputExceededException"] * 2,
        "Emit job started": ["EventBridge.InternalException"],
        "Generate the partitions": ["SQS.SdkClientException"],
        "Export the job": ["SQS.SdkClientException"],
        "Mark job completed": ["DynamoDB.InternalServerErrorException"],
        "Release job slot": ["DynamoDB.ProvisionedThroughputExceededException"] * 2,
        "Emit job completed": ["EventBridge.InternalException"],
    }
    record = env.job(job["job_id"])
    assert record["status"] == "COMPLETED"
    assert job["job_id"] not in env.slot_holders()
    # Exactly one item per partition and one export were sent (a failed send attempt sent nothing).
    assert env.worker().receive(wait_seconds=0) is None
    assert [type(e) for e in env.events(job["job_id"], expected=2)] == [JobStarted, JobCompleted]


def test_a_second_lifecycle_start_for_the_same_job_is_refused_by_name(env: Env) -> None:
    job = env.create_job(num_records=2)
    execution_arn = env.promote(job)
    env.drive(execution_arn)
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

    done = env.drive(execution_arn)
    execution = env.stack.wait(execution_arn)

    assert [outcome.reported for _, outcome in done] == ["success", "exported"]
    assert execution.path == [
        "Read lifecycle settings",
        "Mark job running",
        "Resume the job this execution already marked running",
        *STARTED[2:],
        "Export the job",
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
