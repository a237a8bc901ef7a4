"""The cost rollup fed with the CostTracking stream records moto really produced."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from functions.rollup.handler import lambda_handler
from tests.integration.streams.conftest import deliver
from tests.integration.streams.support import (
    COST_TABLE,
    JOBS_TABLE,
    StreamTap,
    av,
    batches,
    get_job,
    plain,
    queue_job,
)

pytestmark = pytest.mark.integration


def put_delta(
    db: Any,
    job_id: str,
    batch_index: int,
    *,
    bedrock: str,
    fargate: str = "0",
    s3: str = "0",
    tokens_in: int = 100,
    tokens_out: int = 50,
    records: int = 10,
) -> None:
    """A worker's cost record for one batch, as docs/data-model.md (CostTracking) describes it."""
    db.put_item(
        TableName=COST_TABLE,
        Item={
            "job_id": av(job_id),
            "record_id": av(f"{batch_index:08d}"),
            "tokens_in": av(tokens_in),
            "tokens_out": av(tokens_out),
            "records": av(records),
            "cost": av({"bedrock": Decimal(bedrock), "fargate": Decimal(fargate), "s3": Decimal(s3)}),
            "created_at": av("2026-11-28T15:00:00.000Z"),
            "model_id": av("anthropic.claude-3-haiku"),
            "ttl": av(1_900_000_000),
        },
        ConditionExpression="attribute_not_exists(record_id)",
    )


def rolled_up(db: Any, job_id: str) -> dict[str, Any]:
    job = get_job(db, job_id)
    assert job is not None
    return {
        "records_generated": job["records_generated"],
        "tokens_used": job["tokens_used"],
        "cost": job["cost"],
        "budget_exceeded": job.get("budget_exceeded"),
    }


def cost_items(db: Any) -> list[dict[str, Any]]:
    return sorted(
        (plain(i) for i in db.scan(TableName=COST_TABLE, ConsistentRead=True)["Items"]),
        key=lambda i: (i["job_id"], i["record_id"]),
    )


def test_each_delta_is_added_once_even_when_every_batch_replays(aws: Any, cost_stream: StreamTap) -> None:
    db = aws.client("dynamodb")
    job_id = queue_job(db, budget_limit=Decimal("100"))
    put_delta(db, job_id, 0, bedrock="0.1", fargate="0.02", s3="0.001", tokens_in=120, tokens_out=30)
    put_delta(db, job_id, 1, bedrock="0.2", fargate="0.02", s3="0.001", tokens_in=80, tokens_out=70)
    put_delta(db, job_id, 2, bedrock="0.3", fargate="0.01", s3="0", tokens_in=1, tokens_out=2, records=3)

    for batch in batches(cost_stream.read(), 2):
        assert deliver(lambda_handler, batch, cost_stream) == {"batchItemFailures": []}
        after_first = (rolled_up(db, job_id), cost_items(db))
        assert deliver(lambda_handler, batch, cost_stream) == {"batchItemFailures": []}
        assert (rolled_up(db, job_id), cost_items(db)) == after_first

    # The rollup's own rolled_up_at writes come back as MODIFY records: skipped, twice.
    modifies = cost_stream.read()
    assert [r["eventName"] for r in modifies] == ["MODIFY"] * 3
    before = rolled_up(db, job_id)
    for _ in range(2):
        assert deliver(lambda_handler, modifies, cost_stream) == {"batchItemFailures": []}
    assert rolled_up(db, job_id) == before

    assert before == {
        "records_generated": 23,
        "tokens_used": 303,
        # Decimal end to end: 0.1 + 0.2 + 0.3 is exactly 0.6.
        "cost": {
            "bedrock": Decimal("0.6"),
            "fargate": Decimal("0.05"),
            "s3": Decimal("0.002"),
            "total": Decimal("0.652"),
        },
        "budget_exceeded": None,
    }
    assert all("rolled_up_at" in item for item in cost_items(db))


def test_the_job_is_marked_once_its_total_reaches_the_budget(aws: Any, cost_stream: StreamTap) -> None:
    db = aws.client("dynamodb")
    job_id = queue_job(db, budget_limit=Decimal("1.00"))
    put_delta(db, job_id, 0, bedrock="0.4", fargate="0.1")
    deliver(lambda_handler, cost_stream.read(), cost_stream)
    assert rolled_up(db, job_id)["budget_exceeded"] is None

    put_delta(db, job_id, 1, bedrock="0.4", fargate="0.1")  # total exactly 1.00: reached
    records = [r for r in cost_stream.read() if r["eventName"] == "INSERT"]
    assert deliver(lambda_handler, records, cost_stream) == {"batchItemFailures": []}
    reached = get_job(db, job_id)
    assert reached is not None
    assert reached["cost"]["total"] == Decimal("1.0")
    assert reached["budget_exceeded"] is True

    # A replay changes nothing, not even updated_at.
    assert deliver(lambda_handler, records, cost_stream) == {"batchItemFailures": []}
    assert get_job(db, job_id) == reached


def test_a_poison_record_fails_alone(aws: Any, cost_stream: StreamTap) -> None:
    db = aws.client("dynamodb")
    job_id = queue_job(db)
    put_delta(db, job_id, 0, bedrock="0.5")
    # A cost record that breaks the contract: negative tokens and no cost map.
    db.put_item(
        TableName=COST_TABLE,
        Item={"job_id": av(job_id), "record_id": av("00000001"), "tokens_in": av(-5), "records": av(1)},
    )
    put_delta(db, job_id, 2, bedrock="0.25")
    records = cost_stream.read()

    answer = deliver(lambda_handler, records, cost_stream)

    assert answer == {"batchItemFailures": [{"itemIdentifier": records[1]["dynamodb"]["SequenceNumber"]}]}
    assert rolled_up(db, job_id)["cost"]["total"] == Decimal("0.75")
    assert "rolled_up_at" not in cost_items(db)[1]


def test_costs_of_a_deleted_job_are_skipped_not_failed(aws: Any, cost_stream: StreamTap) -> None:
    db = aws.client("dynamodb")
    job_id = queue_job(db)
    put_delta(db, job_id, 0, bedrock="0.5")
    db.delete_item(TableName=JOBS_TABLE, Key={"job_id": av(job_id)})

    assert deliver(lambda_handler, cost_stream.read(), cost_stream) == {"batchItemFailures": []}

    # Nothing recreated the job, and the delta stays unmarked (nothing was applied).
    assert get_job(db, job_id) is None
    assert "rolled_up_at" not in cost_items(db)[0]


def test_a_delta_deleted_before_its_rollup_is_skipped(aws: Any, cost_stream: StreamTap) -> None:
    db = aws.client("dynamodb")
    job_id = queue_job(db)
    put_delta(db, job_id, 0, bedrock="0.5")
    db.delete_item(TableName=COST_TABLE, Key={"job_id": av(job_id), "record_id": av("00000000")})
    records = [r for r in cost_stream.read() if r["eventName"] == "INSERT"]

    assert deliver(lambda_handler, records, cost_stream) == {"batchItemFailures": []}

    assert rolled_up(db, job_id)["cost"]["total"] == Decimal("0")
    assert cost_items(db) == []


def test_deltas_arriving_after_the_final_totals_are_marked_but_not_added(
    aws: Any, cost_stream: StreamTap
) -> None:
    """The lifecycle wrote COMPLETED with the export's summed totals (``totals_final_at``) before the
    stream delivered the last deltas: they are marked rolled up and the final totals stay as written,
    so the first COMPLETED read already showed the final numbers (issue 14 item 14)."""
    db = aws.client("dynamodb")
    job_id = queue_job(db, budget_limit=Decimal("100"))
    put_delta(db, job_id, 0, bedrock="0.1", records=10)
    deliver(lambda_handler, cost_stream.read(), cost_stream)
    put_delta(db, job_id, 1, bedrock="0.2", records=7)
    late = [r for r in cost_stream.read() if r["eventName"] == "INSERT"]
    final = {"bedrock": Decimal("0.3"), "fargate": Decimal(0), "s3": Decimal(0), "total": Decimal("0.3")}
    db.update_item(  # what "Mark job completed" writes with the status
        TableName=JOBS_TABLE,
        Key={"job_id": av(job_id)},
        UpdateExpression="SET records_generated = :r, tokens_used = :t, #c = :c, totals_final_at = :at",
        ExpressionAttributeNames={"#c": "cost"},
        ExpressionAttributeValues={
            ":r": av(17),
            ":t": av(300),
            ":c": av(final),
            ":at": av("2026-11-28T15:10:00.000Z"),
        },
    )

    for _ in range(2):  # and a replay
        assert deliver(lambda_handler, late, cost_stream) == {"batchItemFailures": []}

    assert rolled_up(db, job_id) == {
        "records_generated": 17,
        "tokens_used": 300,
        "cost": final,
        "budget_exceeded": None,
    }
    assert all("rolled_up_at" in item for item in cost_items(db))
