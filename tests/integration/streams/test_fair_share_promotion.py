"""Fair share in the promoter against moto: per-user caps held by the SLOTS item's user sets, the
order priority > fewest running > age, and user sets pruned once the lifecycle released a slot."""

from __future__ import annotations

from typing import Any

import pytest

from functions.common.settings import load_settings
from functions.promoter.handler import lambda_handler
from tests.integration.streams.conftest import deliver
from tests.integration.streams.support import (
    QUEUE_TABLE,
    LifecycleStandIn,
    StreamTap,
    av,
    executions_by_name,
    plain,
    queue_job,
    queued_job_ids,
    slot_holders,
)

pytestmark = pytest.mark.integration


def _slots_item(db: Any) -> dict[str, Any]:
    item = db.get_item(
        TableName=QUEUE_TABLE, Key={"status": av("SLOTS"), "queue_key": av("RUNNING")}, ConsistentRead=True
    ).get("Item")
    return plain(item) if item else {}


def test_one_user_cannot_take_every_slot(
    aws: Any, lifecycle: str, jobs_stream: StreamTap, settings_env: Any
) -> None:
    settings_env(max_running_jobs=4, max_running_jobs_per_user=2)
    db = aws.client("dynamodb")
    ann = [queue_job(db, user_id="ann", priority=5, seconds=i) for i in range(5)]
    bob = queue_job(db, user_id="bob", priority=5, seconds=10)
    cid = queue_job(db, user_id="cid", priority=10, seconds=20)

    assert deliver(lambda_handler, jobs_stream.read(), jobs_stream) == {"batchItemFailures": []}

    # Priority 10 first (cid); then ann's oldest and bob (fewest running) and ann's second: her cap.
    assert slot_holders(db) == {cid, ann[0], bob, ann[1]}
    assert set(executions_by_name(aws.client("stepfunctions"), lifecycle)) == {cid, ann[0], bob, ann[1]}
    assert queued_job_ids(db) == ann[2:]
    slots = _slots_item(db)
    assert slots["user:ann"] == {ann[0], ann[1]}
    assert slots["user:bob"] == {bob}
    assert slots["user:cid"] == {cid}


def test_a_capped_user_waits_with_slots_free_and_runs_when_one_of_theirs_ends(
    aws: Any, lifecycle: str, jobs_stream: StreamTap, settings_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_env(max_running_jobs=3)
    monkeypatch.delenv("MAX_RUNNING_JOBS_PER_USER")  # unset: the default cap, max(1, 3 // 2) = 1
    load_settings.cache_clear()
    db = aws.client("dynamodb")
    first, second = (queue_job(db, user_id="ann", seconds=i) for i in range(2))

    deliver(lambda_handler, jobs_stream.read(), jobs_stream)
    assert slot_holders(db) == {first}  # two slots stay free: ann may run one job
    assert queued_job_ids(db) == [second]

    stand_in = LifecycleStandIn(db)
    assert stand_in.mark_running(first, user_id="ann")
    stand_in.finish(first, user_id="ann")  # releases `holders` only, then slot_released_at
    assert _slots_item(db)["user:ann"] == {first}  # stale until the next pass prunes it

    deliver(lambda_handler, jobs_stream.read(), jobs_stream)

    assert slot_holders(db) == {second}
    assert _slots_item(db)["user:ann"] == {second}
    assert queued_job_ids(db) == []
