"""The reconciler against moto: what a lost stream record or a lost lifecycle execution leaves behind
is repaired once, conditionally, and counted.

Executions are moto's (recorded, never run): a RUNNING job's lifecycle is "lost" when its execution
does not exist or was stopped; the re-drive is asserted by the execution it starts and its input.
``tests/statemachines/test_lifecycle_redrive.py`` runs the real ASL of a re-drive on MiniStack.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from functions.common.aws import client
from functions.common.events import EventPublisher, JobFailed
from functions.common.settings import load_settings
from functions.promoter.repository import LifecycleExecutions, QueueRepository
from functions.promoter.service import PromoterService
from functions.reconciler.handler import build_service, lambda_handler
from functions.reconciler.models import ReconcilerSettings, RunningJob
from functions.reconciler.repository import LifecycleRuns, ReconcilerJobs
from functions.reconciler.service import ReconcilerService
from tests.integration.streams.conftest import LIFECYCLE_ARN
from tests.integration.streams.support import (
    JOBS_TABLE,
    QUEUE_TABLE,
    LifecycleStandIn,
    executions_by_name,
    get_job,
    queue_job,
    queued_job_ids,
    slot_holders,
)
from tests.support.http import LambdaContext

pytestmark = pytest.mark.integration

EXECUTION_PREFIX = LIFECYCLE_ARN.replace(":stateMachine:", ":execution:")


def _reconcile() -> dict[str, Any]:
    return lambda_handler({"source": "aws.events", "detail-type": "Scheduled Event"}, LambdaContext())


def _running_job(aws: Any, user_id: str = "user-1") -> str:
    """A job promoted and marked RUNNING as the promoter and the lifecycle do, whose execution is
    then left as the test says (``started``: the promoter's execution exists)."""
    db = aws.client("dynamodb")
    job_id = queue_job(db, user_id=user_id)
    QueueRepository(db, QUEUE_TABLE, JOBS_TABLE).claim(
        next(e for e in QueueRepository(db, QUEUE_TABLE, JOBS_TABLE).queued_entries() if e.job_id == job_id),
        5,
    )
    assert LifecycleStandIn(db).mark_running(job_id, user_id=user_id)
    return job_id


def test_a_queued_job_whose_stream_record_was_lost_is_promoted_and_counted(
    aws: Any, lifecycle: str, settings_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    db = aws.client("dynamodb")
    job_id = queue_job(db)  # created two days "ago"; no stream record ever reached the promoter

    answer = _reconcile()

    assert answer["repairs"]["PromotedQueuedJobs"] == 1
    assert slot_holders(db) == {job_id}
    assert executions_by_name(aws.client("stepfunctions"), lifecycle) == {job_id: 1}
    assert queued_job_ids(db) == []
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf[-1]["ReconcilerRepairs"] == [1.0]
    assert emf[-1]["ReconcilerPromotedQueuedJobs"] == [1.0]
    assert emf[-1]["RunningJobs"] == [1.0]

    assert _reconcile()["repairs"] == dict.fromkeys(answer["repairs"], 0)  # nothing left to repair


def test_the_slot_of_a_finished_job_without_a_lifecycle_is_freed(
    aws: Any, lifecycle: str, settings_env: Any
) -> None:
    db = aws.client("dynamodb")
    job_id = _running_job(aws)
    LifecycleStandIn(db).finish(job_id)  # terminal status written, slot released...
    # ...put the slot back as if the lifecycle had died between its terminal write and its release.
    db.update_item(
        TableName=QUEUE_TABLE,
        Key={"status": {"S": "SLOTS"}, "queue_key": {"S": "RUNNING"}},
        UpdateExpression="ADD holders :j",
        ExpressionAttributeValues={":j": {"SS": [job_id]}},
    )

    answer = _reconcile()

    assert answer["repairs"]["ReleasedSlots"] == 1
    assert slot_holders(db) == set()


@pytest.mark.parametrize("lost", ["missing", "stopped"])
def test_a_running_job_whose_execution_is_gone_is_redriven_once(
    aws: Any, lifecycle: str, settings_env: Any, lost: str
) -> None:
    db, sfn = aws.client("dynamodb"), aws.client("stepfunctions")
    job_id = _running_job(aws)
    if lost == "stopped":
        arn = sfn.start_execution(stateMachineArn=lifecycle, name=job_id, input="{}")["executionArn"]
        sfn.stop_execution(executionArn=arn, error="Deleted", cause="an operator stopped it")

    first = _reconcile()
    second = _reconcile()  # within the grace period: the new execution is not looked at twice

    assert first["repairs"]["RedrivenJobs"] == 1
    assert second["repairs"]["RedrivenJobs"] == 0
    redrive = f"{job_id}-redrive-1"
    assert executions_by_name(sfn, lifecycle).get(redrive) == 1
    described = sfn.describe_execution(executionArn=f"{EXECUTION_PREFIX}:{redrive}")
    assert json.loads(described["input"]) == {"job_id": job_id, "redrive": 1, "user_id": "user-1"}
    job = get_job(db, job_id)
    assert job is not None
    assert job["status"] == "RUNNING"
    assert job["lifecycle_redrives"] == 1
    assert slot_holders(db) == {job_id}  # the job keeps its slot


def _service(clock: str, max_redrives: int = 2) -> ReconcilerService:
    settings = load_settings(ReconcilerSettings)
    db, sfn = client("dynamodb"), client("stepfunctions")
    slots = QueueRepository(db, QUEUE_TABLE, JOBS_TABLE)
    return ReconcilerService(
        promoter=PromoterService(slots, LifecycleExecutions(sfn, settings.lifecycle_state_machine_arn), 5),
        slots=slots,
        jobs=ReconcilerJobs(db, JOBS_TABLE),
        runs=LifecycleRuns(sfn, settings.lifecycle_state_machine_arn),
        publisher=EventPublisher(client("events"), settings.event_bus_name),
        max_redrives=max_redrives,
        clock=lambda: clock,
    )


def test_a_job_lost_more_often_than_it_may_be_redriven_is_failed_once(
    aws: Any, lifecycle: str, settings_env: Any
) -> None:
    db, sfn = aws.client("dynamodb"), aws.client("stepfunctions")
    job_id = _running_job(aws)
    aws.capture.drain()

    # Each pass is three minutes after the last (past the grace); each re-drive's execution is lost too.
    times = ["2026-11-30T12:00:00.000Z", "2026-11-30T12:03:00.000Z", "2026-11-30T12:06:00.000Z"]
    reports = []
    for n, now in enumerate(times):
        reports.append(_service(now).reconcile())
        if n < 2:
            arn = f"{EXECUTION_PREFIX}:{job_id}-redrive-{n + 1}"
            sfn.stop_execution(executionArn=arn, error="Lost", cause="test")

    assert [r.redriven for r in reports] == [[job_id], [job_id], []]
    assert reports[2].failed == [job_id]
    job = get_job(db, job_id)
    assert job is not None
    assert job["status"] == "FAILED"
    assert job["user_status"] == "user-1#FAILED"
    assert job["error"] == "JobLifecycleLost"
    assert "after 2 re-drive(s)" in job["cause"]
    assert job["completed_at"] == job["slot_released_at"] == times[2]
    assert slot_holders(db) == set()
    events = aws.capture.drain()
    assert [e["detail-type"] for e in events] == ["Job Failed"]
    assert JobFailed.model_validate(events[0]["detail"]).error == "JobLifecycleLost"

    assert _service("2026-11-30T12:09:00.000Z").reconcile().failed == []  # a FAILED job stays as it is
    assert aws.capture.drain() == []


def test_a_job_that_finishes_while_the_pass_looks_at_it_is_not_redriven(
    aws: Any, lifecycle: str, settings_env: Any
) -> None:
    """The pass read RUNNING, the lifecycle then wrote COMPLETED and ended: the conditional count fails."""
    db, sfn = aws.client("dynamodb"), aws.client("stepfunctions")
    job_id = _running_job(aws)
    snapshot = RunningJob(job_id=job_id, user_id="user-1", status="RUNNING")

    class FinishingMeanwhile(ReconcilerJobs):
        def running_jobs(self, job_ids: Any) -> list[RunningJob]:
            LifecycleStandIn(db).finish(job_id)
            return [snapshot]

    service = build_service(load_settings(ReconcilerSettings))
    service._jobs = FinishingMeanwhile(db, JOBS_TABLE)

    report = service.reconcile()

    assert report.redriven == report.failed == []
    assert f"{job_id}-redrive-1" not in executions_by_name(sfn, lifecycle)
    job = get_job(db, job_id)
    assert job is not None
    assert job["status"] == "COMPLETED"
    assert "lifecycle_redrives" not in job


def test_cost_deltas_whose_stream_records_were_lost_are_rolled_up_once(
    aws: Any, lifecycle: str, settings_env: Any
) -> None:
    """A restart of the local emulator keeps the table but not its stream: deltas written just
    before it never reach the rollup. The reconciler applies them through the rollup's transaction."""
    from tests.integration.streams.test_cost_rollup import put_delta, rolled_up

    db = aws.client("dynamodb")
    job_id = _running_job(aws)
    put_delta(db, job_id, 0, bedrock="0.25", records=10)  # written long ago, never rolled up
    put_delta(db, job_id, 1, bedrock="0.50", records=10)

    first = _reconcile()
    second = _reconcile()

    assert first["repairs"]["RolledUpMissedCosts"] == 2
    assert second["repairs"]["RolledUpMissedCosts"] == 0
    totals = rolled_up(db, job_id)
    assert totals["records_generated"] == 20
    assert totals["cost"]["total"] == Decimal("0.75")
