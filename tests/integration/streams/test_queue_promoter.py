"""The queue promoter fed with the Jobs stream records moto really produced.

Executions are asserted by name on moto's Step Functions (created, never run: the lifecycle's part
is played by ``LifecycleStandIn`` where a test needs jobs to run and finish).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.promoter.handler import lambda_handler
from tests.integration.streams.conftest import LIFECYCLE_ARN, create_lifecycle, deliver
from tests.integration.streams.support import (
    JOBS_TABLE,
    QUEUE_TABLE,
    LifecycleStandIn,
    StreamTap,
    av,
    batches,
    executions_by_name,
    get_job,
    plain,
    queue_job,
    queued_job_ids,
    slot_holders,
    user_queued_ids,
)

pytestmark = pytest.mark.integration


def _snapshot(aws: Any) -> dict[str, Any]:
    """Everything the promoter can change: both tables and the executions (with their input)."""
    db = aws.client("dynamodb")
    tables = {}
    for table in (JOBS_TABLE, QUEUE_TABLE):
        items = db.scan(TableName=table, ConsistentRead=True)["Items"]
        tables[table] = sorted(
            (plain(i) for i in items), key=lambda i: json.dumps(i, default=str, sort_keys=True)
        )
    sfn = aws.client("stepfunctions")
    executions = sfn.list_executions(stateMachineArn=LIFECYCLE_ARN)["executions"]
    tables["executions"] = sorted(
        (e["name"], sfn.describe_execution(executionArn=e["executionArn"])["input"]) for e in executions
    )
    return tables


def _sequence_numbers(records: list[dict[str, Any]]) -> list[str]:
    return [r["dynamodb"]["SequenceNumber"] for r in records]


def test_admits_by_priority_then_age_up_to_the_limit(
    aws: Any, lifecycle: str, jobs_stream: StreamTap, settings_env: Any
) -> None:
    settings_env(max_running_jobs=2)
    db = aws.client("dynamodb")
    low = queue_job(db, priority=1, seconds=0)
    old_normal = queue_job(db, priority=5, seconds=1)
    urgent = queue_job(db, priority=10, seconds=2)
    new_normal = queue_job(db, priority=5, seconds=3)

    answer = deliver(lambda_handler, jobs_stream.read(), jobs_stream)

    assert answer == {"batchItemFailures": []}
    assert slot_holders(db) == {urgent, old_normal}
    assert executions_by_name(aws.client("stepfunctions"), lifecycle) == {urgent: 1, old_normal: 1}
    assert queued_job_ids(db) == [new_normal, low]
    # The promoter claims; the lifecycle marks RUNNING. Status is untouched here.
    assert get_job(db, urgent)["status"] == "QUEUED"  # type: ignore[index]
    sfn = aws.client("stepfunctions")
    described = sfn.describe_execution(
        executionArn=f"{LIFECYCLE_ARN.replace(':stateMachine:', ':execution:')}:{urgent}"
    )
    assert json.loads(described["input"]) == {"job_id": urgent, "user_id": "user-1"}


def test_replaying_every_batch_twice_changes_nothing(
    aws: Any, lifecycle: str, jobs_stream: StreamTap, settings_env: Any
) -> None:
    settings_env(max_running_jobs=2)
    db = aws.client("dynamodb")
    stand_in = LifecycleStandIn(db)
    job_ids = [queue_job(db, priority=5, seconds=i) for i in range(5)]
    sfn = aws.client("stepfunctions")

    delivered = 0
    # Run until every job finished: promote, run, finish, release; each batch delivered twice.
    for _round in range(20):
        records = jobs_stream.read()
        for batch in batches(records, 2):
            first = deliver(lambda_handler, batch, jobs_stream)
            after_first = _snapshot(aws)
            second = deliver(lambda_handler, batch, jobs_stream)
            assert first == second == {"batchItemFailures": []}
            assert _snapshot(aws) == after_first
            delivered += 1
        started = executions_by_name(sfn, lifecycle)
        for job_id in started:
            job = get_job(db, job_id)
            assert job is not None
            if job["status"] == "QUEUED":
                assert stand_in.mark_running(job_id)
            elif job["status"] == "RUNNING":
                stand_in.finish(job_id)
        if all(get_job(db, j)["status"] == "COMPLETED" for j in job_ids):  # type: ignore[index]
            break

    assert delivered > 5
    assert executions_by_name(sfn, lifecycle) == {j: 1 for j in job_ids}
    assert slot_holders(db) == set()
    assert queued_job_ids(db) == []
    assert user_queued_ids(db) == set()  # each job left the queued quota once, replays or not


def test_a_poison_record_fails_alone(aws: Any, lifecycle: str, jobs_stream: StreamTap) -> None:
    db = aws.client("dynamodb")
    first = queue_job(db, seconds=0)
    # A Jobs item no writer of the contract would produce: its status is not one of the six.
    db.put_item(TableName=JOBS_TABLE, Item={"job_id": av("corrupt"), "status": av("PAUSED")})
    second = queue_job(db, seconds=1)
    records = jobs_stream.read()
    assert [r["eventName"] for r in records] == ["INSERT", "INSERT", "INSERT"]

    answer = deliver(lambda_handler, records, jobs_stream)

    assert answer == {"batchItemFailures": [{"itemIdentifier": _sequence_numbers(records)[1]}]}
    assert slot_holders(db) == {first, second}
    assert executions_by_name(aws.client("stepfunctions"), lifecycle) == {first: 1, second: 1}


def test_only_queueing_and_slot_release_trigger_a_pass(
    aws: Any, lifecycle: str, jobs_stream: StreamTap
) -> None:
    db = aws.client("dynamodb")
    job_id = queue_job(db)
    inserted = jobs_stream.read()
    # Changes that are neither: a rollup-style update, then the job's deletion.
    db.update_item(
        TableName=JOBS_TABLE,
        Key={"job_id": av(job_id)},
        UpdateExpression="SET updated_at = :now ADD tokens_used :t",
        ExpressionAttributeValues={":now": av("2026-11-28T16:00:00.000Z"), ":t": av(10)},
    )
    other = queue_job(db, seconds=5)
    db.delete_item(TableName=JOBS_TABLE, Key={"job_id": av(other)})
    ignored = [r for r in jobs_stream.read() if r["eventName"] in ("MODIFY", "REMOVE")]
    assert [r["eventName"] for r in ignored] == ["MODIFY", "REMOVE"]

    assert deliver(lambda_handler, ignored, jobs_stream) == {"batchItemFailures": []}
    assert slot_holders(db) == set()
    assert executions_by_name(aws.client("stepfunctions"), lifecycle) == {}

    assert deliver(lambda_handler, inserted, jobs_stream) == {"batchItemFailures": []}
    assert slot_holders(db) == {job_id}
    # The deleted job's Queue item was a leftover: cleaned, never promoted.
    assert queued_job_ids(db) == []
    assert executions_by_name(aws.client("stepfunctions"), lifecycle) == {job_id: 1}


def test_a_freed_slot_is_reused_at_once(
    aws: Any, lifecycle: str, jobs_stream: StreamTap, settings_env: Any
) -> None:
    settings_env(max_running_jobs=1)
    db = aws.client("dynamodb")
    stand_in = LifecycleStandIn(db)
    first = queue_job(db, seconds=0)
    second = queue_job(db, seconds=1)
    deliver(lambda_handler, jobs_stream.read(), jobs_stream)
    assert slot_holders(db) == {first}
    assert stand_in.mark_running(first)
    jobs_stream.read()  # the RUNNING write: not a trigger

    stand_in.finish(first)  # terminal status, then release, then slot_released_at
    released = jobs_stream.read()
    assert [r["eventName"] for r in released] == ["MODIFY", "MODIFY"]

    assert deliver(lambda_handler, released, jobs_stream) == {"batchItemFailures": []}
    assert slot_holders(db) == {second}
    assert executions_by_name(aws.client("stepfunctions"), lifecycle) == {first: 1, second: 1}


def test_a_cancel_requested_job_is_dequeued_and_never_promoted(
    aws: Any, lifecycle: str, jobs_stream: StreamTap
) -> None:
    db = aws.client("dynamodb")
    cancelled = queue_job(db, priority=9, seconds=0)
    waiting = queue_job(db, priority=5, seconds=1)
    db.update_item(
        TableName=JOBS_TABLE,
        Key={"job_id": av(cancelled)},
        UpdateExpression="SET cancel_requested_at = :now",
        ExpressionAttributeValues={":now": av("2026-11-28T15:00:01.000Z")},
    )

    assert deliver(lambda_handler, jobs_stream.read(), jobs_stream) == {"batchItemFailures": []}

    assert slot_holders(db) == {waiting}
    assert queued_job_ids(db) == []
    assert executions_by_name(aws.client("stepfunctions"), lifecycle) == {waiting: 1}
    # Its status stays QUEUED: marking it CANCELLED is the cancellation state machine's part.
    assert get_job(db, cancelled)["status"] == "QUEUED"  # type: ignore[index]


def test_a_holder_whose_execution_did_not_start_is_started_on_the_next_pass(
    aws: Any, settings_env: Any, jobs_stream: StreamTap
) -> None:
    # The lifecycle does not exist yet: StartExecution fails after the claim succeeded.
    db = aws.client("dynamodb")
    job_id = queue_job(db)
    records = jobs_stream.read()

    answer = deliver(lambda_handler, records, jobs_stream)

    assert answer == {"batchItemFailures": [{"itemIdentifier": _sequence_numbers(records)[0]}]}
    assert slot_holders(db) == {job_id}
    assert queued_job_ids(db) == []

    create_lifecycle(aws)
    assert deliver(lambda_handler, records, jobs_stream) == {"batchItemFailures": []}
    assert slot_holders(db) == {job_id}
    assert executions_by_name(aws.client("stepfunctions"), LIFECYCLE_ARN) == {job_id: 1}


def test_the_slot_of_a_holder_that_lost_its_lifecycle_is_released(
    aws: Any, settings_env: Any, jobs_stream: StreamTap
) -> None:
    settings_env(max_running_jobs=1)
    db = aws.client("dynamodb")
    orphan = queue_job(db, seconds=0)
    assert deliver(lambda_handler, jobs_stream.read(), jobs_stream)["batchItemFailures"]
    assert slot_holders(db) == {orphan}
    # Before any execution started, the cancellation state machine ends the job (it is QUEUED).
    db.update_item(
        TableName=JOBS_TABLE,
        Key={"job_id": av(orphan)},
        UpdateExpression="SET #s = :c, user_status = :us",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":c": av("CANCELLED"), ":us": av("user-1#CANCELLED")},
    )
    create_lifecycle(aws)
    waiting = queue_job(db, seconds=1)

    assert deliver(lambda_handler, jobs_stream.read(), jobs_stream) == {"batchItemFailures": []}

    assert slot_holders(db) == {waiting}
    assert executions_by_name(aws.client("stepfunctions"), LIFECYCLE_ARN) == {waiting: 1}
