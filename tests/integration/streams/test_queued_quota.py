"""The users' QUEUED sets (the jobs API's strict queued quota) against moto: a job leaves its set
when the Jobs stream shows it leaving QUEUED (promoted to RUNNING, cancelled, deleted), replays
change nothing, and the reconciler removes what a lost stream record left behind, counted.

Jobs are created through the jobs API (its create transaction adds them to the set); the lifecycle
and cancellation writes are the state machines' own conditional writes (``LifecycleStandIn``,
``_cancel_while_queued``); the records are the ones moto's stream really produced.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from functions.common.clock import now_iso, parse_iso, to_iso
from functions.common.settings import load_settings
from functions.promoter.handler import lambda_handler as promoter
from functions.reconciler.handler import lambda_handler as reconciler
from tests.integration.jobs.support import job_body, jobs_api, make_template, upload_seed
from tests.integration.streams.conftest import deliver
from tests.integration.streams.support import (
    JOBS_TABLE,
    QUEUE_TABLE,
    LifecycleStandIn,
    StreamTap,
    av,
    get_job,
    user_queued_ids,
)
from tests.support.http import LambdaContext

pytestmark = pytest.mark.integration


@pytest.fixture
def quota_of_three(monkeypatch: pytest.MonkeyPatch, settings_env: Any) -> Iterator[None]:
    monkeypatch.setenv("MAX_QUEUED_JOBS_PER_USER", "3")
    settings_env(max_running_jobs=1)  # one job runs; the others stay QUEUED
    yield
    load_settings.cache_clear()


def _create(aws: Any, user: str = "user-1") -> Any:
    return jobs_api.post("/jobs", user=user, body=job_body(make_template(aws, user), upload_seed(aws, user)))


def _cancel_while_queued(db: Any, job_id: str, user_id: str = "user-1") -> None:
    """The cancellation state machine's QUEUED branch: CANCELLED on condition QUEUED, then the Queue
    item deleted (unconditionally)."""
    now = now_iso()
    job = get_job(db, job_id)
    assert job is not None
    db.update_item(
        TableName=JOBS_TABLE,
        Key={"job_id": av(job_id)},
        UpdateExpression="SET #s = :cancelled, user_status = :us, completed_at = :now, updated_at = :now",
        ConditionExpression="#s = :queued",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={
            ":cancelled": av("CANCELLED"),
            ":queued": av("QUEUED"),
            ":us": av(f"{user_id}#CANCELLED"),
            ":now": av(now),
        },
    )
    db.delete_item(TableName=QUEUE_TABLE, Key={"status": av("QUEUED"), "queue_key": av(job["queue_key"])})


def test_a_job_leaves_the_queued_quota_when_it_starts_is_cancelled_or_deleted(
    aws: Any, lifecycle: str, jobs_stream: StreamTap, quota_of_three: None
) -> None:
    db = aws.client("dynamodb")
    created = [_create(aws) for _ in range(3)]
    assert [c.status for c in created] == [201, 201, 201]
    first, second, third = (c.body["job_id"] for c in created)
    assert _create(aws).status == 429
    assert user_queued_ids(db) == {first, second, third}

    # The INSERTs run a promotion pass (one slot: the first job); promotion alone leaves it QUEUED.
    assert deliver(promoter, jobs_stream.read(), jobs_stream) == {"batchItemFailures": []}
    assert user_queued_ids(db) == {first, second, third}
    assert _create(aws).status == 429

    # The lifecycle marks it RUNNING; the record frees its place.
    assert LifecycleStandIn(db).mark_running(first)
    started = jobs_stream.read()
    assert deliver(promoter, started, jobs_stream) == {"batchItemFailures": []}
    assert user_queued_ids(db) == {second, third}

    # Cancelled while queued (the API records the request, the state machine ends it).
    assert jobs_api.post(f"/jobs/{second}/cancel", user="user-1").status == 202
    _cancel_while_queued(db, second)
    # Deleted while queued (the cleanup state machine only deletes finished jobs; any REMOVE of a
    # QUEUED item frees its place all the same).
    db.delete_item(TableName=JOBS_TABLE, Key={"job_id": av(third)})
    ended = jobs_stream.read()
    assert {r["eventName"] for r in ended} == {"MODIFY", "REMOVE"}
    assert deliver(promoter, ended, jobs_stream) == {"batchItemFailures": []}
    assert user_queued_ids(db) == set()

    # Replays (twice) and redeliveries out of order remove nothing more and fail nothing.
    for records in (ended, started, ended + started):
        assert deliver(promoter, records, jobs_stream) == {"batchItemFailures": []}
    assert user_queued_ids(db) == set()

    refill = [_create(aws) for _ in range(3)]
    assert [c.status for c in refill] == [201, 201, 201]
    assert user_queued_ids(db) == {c.body["job_id"] for c in refill}
    assert _create(aws).status == 429


def _reconcile() -> dict[str, Any]:
    return reconciler({"source": "aws.events", "detail-type": "Scheduled Event"}, LambdaContext())


def test_the_reconciler_removes_what_lost_stream_records_left_in_a_queued_set(
    aws: Any, lifecycle: str, jobs_stream: StreamTap, quota_of_three: None
) -> None:
    db = aws.client("dynamodb")
    started_long_ago, deleted, waiting = (_create(aws).body["job_id"] for _ in range(3))
    gone_user_job = _create(aws, "user-2").body["job_id"]
    stand_in = LifecycleStandIn(db)
    # None of these changes reaches the promoter (their stream records are "lost").
    assert stand_in.mark_running(started_long_ago)
    db.update_item(
        TableName=JOBS_TABLE,
        Key={"job_id": av(started_long_ago)},
        UpdateExpression="SET started_at = :then",
        ExpressionAttributeValues={":then": av(to_iso(parse_iso(now_iso()) - timedelta(minutes=10)))},
    )
    db.delete_item(TableName=JOBS_TABLE, Key={"job_id": av(deleted)})
    db.delete_item(TableName=JOBS_TABLE, Key={"job_id": av(gone_user_job)})
    assert _create(aws).status == 429  # the drift holds the user's places

    first = _reconcile()

    assert first["repairs"]["PrunedQueuedJobIds"] == 3
    assert user_queued_ids(db) == {waiting}
    assert user_queued_ids(db, "user-2") == set()
    # The reconciler's promotion pass claimed the waiting job's slot; it is still QUEUED.
    assert get_job(db, waiting)["status"] == "QUEUED"  # type: ignore[index]

    # A job that left QUEUED just now is the stream's to remove: left alone, not a repair.
    assert stand_in.mark_running(waiting)
    second = _reconcile()
    assert second["repairs"]["PrunedQueuedJobIds"] == 0
    assert user_queued_ids(db) == {waiting}
    # The emptied item of user-2 is deleted (a later create recreates it).
    assert "Item" not in db.get_item(
        TableName=QUEUE_TABLE, Key={"status": av("USER_QUEUED"), "queue_key": av("user-2")}
    )
    assert _create(aws, "user-2").status == 201

    # The stream's own removal and a later pass count nothing twice.
    assert deliver(promoter, jobs_stream.read(), jobs_stream) == {"batchItemFailures": []}
    assert user_queued_ids(db) == set()
    assert _reconcile()["repairs"]["PrunedQueuedJobIds"] == 0
