"""A lost lifecycle execution re-driven by the reconciler, on MiniStack with the real ASL.

The worker dies after its first batch and the job's execution is stopped (what a restart of the
local runtime, or an operator, leaves: a RUNNING job no execution waits for). One reconciler pass
starts ``{job_id}-redrive-1``, which takes the "Resume the job this execution already marked
running" path, sends a new work item and finishes the job: every record once, every batch billed once.
"""

from __future__ import annotations

from typing import Any

import pytest

from functions.common.events import EventPublisher, JobCompleted, JobStarted
from functions.promoter.repository import LifecycleExecutions, QueueRepository
from functions.promoter.service import PromoterService
from functions.reconciler.repository import LifecycleRuns, ReconcilerJobs
from functions.reconciler.service import ReconcilerService
from tests.statemachines.conftest import Env

pytestmark = pytest.mark.statemachines

REDRIVEN = [
    "Read lifecycle settings",
    "Mark job running",
    "Resume the job this execution already marked running",
    "Emit job started",
    "Plan the partitions",
    "Generate the partitions",
    "Export the job",
    "Mark job completed",
    "Release job slot",
    "Record job slot released",
    "Choose the terminal event",
    "Emit job completed",
]


def _reconciler(env: Env) -> ReconcilerService:
    stack, lifecycle = env.stack, env.stack.arns["job_lifecycle"]
    db, sfn = env.client("dynamodb"), env.client("stepfunctions")
    slots = QueueRepository(db, stack.queue_table, stack.jobs_table)
    return ReconcilerService(
        promoter=PromoterService(slots, LifecycleExecutions(sfn, lifecycle), 1000),
        slots=slots,
        jobs=ReconcilerJobs(db, stack.jobs_table),
        runs=LifecycleRuns(sfn, lifecycle),
        publisher=EventPublisher(env.client("events"), stack.substitutions("job_lifecycle")["EventBusName"]),
    )


def test_a_running_job_whose_execution_was_stopped_is_redriven_and_finishes(env: Env) -> None:
    job = env.create_job(num_records=5)  # partitions [0, 2) and [2, 3) of batches of two records
    job_id = job["job_id"]
    first_arn = env.promote(job)
    worker, died = env.worker(), None
    for _ in range(2):  # the two partition items, in whichever order they come
        received = worker.receive(wait_seconds=10)
        assert received is not None
        item = received[0]
        if item["end_batch"] - item["first_batch"] == 2:  # partition 0: die after its first batch
            died = worker.process(item, die_after_batches=1)
        else:
            worker.process(item)
    sfn: Any = env.client("stepfunctions")
    sfn.stop_execution(executionArn=first_arn, error="Lost", cause="the runtime stopped")
    env.client("sqs").purge_queue(QueueUrl=env.stack.work_queue_url)  # the first execution's items
    assert died is not None
    assert died.reported == "died"
    assert env.job(job_id)["status"] == "RUNNING"
    env.events(job_id, expected=1)  # the first Job Started

    report = _reconciler(env).reconcile()

    assert report.redriven == [job_id]
    redrive_arn = f"{first_arn}-redrive-1"
    env.drive(redrive_arn)
    execution = env.stack.wait(redrive_arn)
    assert execution.status == "SUCCEEDED"
    assert execution.path == REDRIVEN
    record = env.job(job_id)
    assert record["status"] == "COMPLETED"
    assert record["lifecycle_redrives"] == 1
    assert record["result"]["records"] == record["records_generated"] == 5
    assert env.exported(job_id) == [0, 1, 2, 3, 4]  # every record once
    # Batch 0 was written before the worker died and again after: still one cost record per batch.
    deltas = env.deltas(job_id)
    assert len(deltas) == len(set(deltas)) == 3
    assert job_id not in env.slot_holders()
    events = env.events(job_id, expected=2)
    assert [type(e) for e in events] == [JobStarted, JobCompleted]  # the re-drive says it started again

    assert _reconciler(env).reconcile().redriven == []  # finished: nothing left to re-drive
