"""GET /dashboard/{job_id}: the seed's shape, from the Jobs item alone, in exactly one DynamoDB read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest

from functions.common.aws import reset_clients
from functions.common.clock import to_iso
from functions.dashboard.handler import lambda_handler as dashboard_handler
from functions.dashboard.service import DashboardService
from functions.jobs.access import JobAccess
from functions.jobs.repository import JobsRepository
from tests.integration.jobs.support import (
    COST_TABLE,
    JOBS_TABLE,
    create_job,
    get_job_item,
    roll_up,
    set_status,
)
from tests.support.http import ApiClient

pytestmark = pytest.mark.integration

dashboard_api = ApiClient(dashboard_handler)


def exact(text: str) -> Any:
    """The answer with its numbers read as the Decimals they were written from."""
    return json.loads(text, parse_float=Decimal)


MISSING_ID = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def dynamodb_calls(aws: Any) -> Iterator[list[str]]:
    """Names of every DynamoDB operation any client made after this fixture started.

    The hook is registered on boto3's default session, which every client of
    ``functions.common.aws`` is built from, and the client cache is emptied so the handler builds
    its clients after the hook exists: no request can bypass the count.
    """
    calls: list[str] = []

    def count(model: Any, **_: Any) -> None:
        calls.append(model.name)

    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    session = boto3.DEFAULT_SESSION
    assert session is not None
    session.events.register("before-call.dynamodb", count, unique_id="dashboard-count")
    reset_clients()
    try:
        yield calls
    finally:
        session.events.unregister("before-call.dynamodb", unique_id="dashboard-count")
        reset_clients()


def _write_cost_records(aws: Any, job_id: str, count: int) -> None:
    """``count`` CostTracking deltas (docs/data-model.md) and their rolled-up sum on the job."""
    table = aws.session.resource("dynamodb").Table(COST_TABLE)
    with table.batch_writer() as batch:
        for i in range(count):
            batch.put_item(
                Item={
                    "job_id": job_id,
                    "record_id": f"{i:08d}",
                    "tokens_in": 30,
                    "tokens_out": 20,
                    "records": 1,
                    "cost": {
                        "bedrock": Decimal("0.001"),
                        "fargate": Decimal("0.0002"),
                        "s3": Decimal("0.00001"),
                    },
                    "created_at": "2026-11-28T15:00:00.000Z",
                    "model_id": "meta.llama3-1-8b-instruct-v1:0",
                    "ttl": 1_900_000_000,
                    "rolled_up_at": "2026-11-28T15:00:01.000Z",
                }
            )
    roll_up(
        aws,
        job_id,
        records=count,
        tokens=50 * count,
        bedrock=str(Decimal("0.001") * count),
        fargate=str(Decimal("0.0002") * count),
        s3=str(Decimal("0.00001") * count),
    )


@pytest.mark.parametrize("cost_records", [1, 1000])
def test_dashboard_is_one_get_item_however_many_cost_records(
    aws: Any, dynamodb_calls: list[str], cost_records: int
) -> None:
    job_id = create_job(aws, num_records=2000, budget_limit="10")
    set_status(aws, job_id, "RUNNING", started_at="2026-11-28T15:00:00.000Z")
    _write_cost_records(aws, job_id, cost_records)
    assert aws.client("dynamodb").scan(TableName=COST_TABLE, Select="COUNT")["Count"] == cost_records
    dynamodb_calls.clear()

    answer = dashboard_api.get(f"/dashboard/{job_id}")

    assert answer.status == 200
    assert dynamodb_calls == ["GetItem"]
    body = exact(answer.text)
    percentage = (Decimal(cost_records) * 100 / 2000).quantize(Decimal("0.01"))
    assert f'"percentage":{percentage}}}' in answer.text
    assert body["progress"] == {
        "records_generated": cost_records,
        "target_records": 2000,
        "percentage": percentage,
    }
    total = Decimal("0.00121") * cost_records
    assert body["cost"] == {
        "bedrock": Decimal("0.001") * cost_records,
        "fargate": Decimal("0.0002") * cost_records,
        "s3": Decimal("0.00001") * cost_records,
        "total": total,
    }
    assert body["budget"]["limit"] == Decimal(10)
    assert body["budget"]["used"] == total
    assert body["budget"]["remaining"] == Decimal(10) - total
    assert body["budget"]["percentage_used"] == (total * 10).quantize(Decimal("0.01"))
    assert body["tokens_used"] == 50 * cost_records
    assert body["timing"]["started_at"] == "2026-11-28T15:00:00.000Z"
    assert body["timing"]["estimated_completion"] is not None


def test_a_new_job_shows_zeros(aws: Any) -> None:
    job_id = create_job(aws, num_records=100, budget_limit="25.50")
    item = get_job_item(aws, job_id)
    assert item is not None

    answer = dashboard_api.get(f"/dashboard/{job_id}")

    assert answer.status == 200
    # Numbers, written with the Decimals' digits.
    assert '"progress":{"records_generated":0,"target_records":100,"percentage":0.00}' in answer.text
    assert '"cost":{"bedrock":0,"fargate":0,"s3":0,"total":0}' in answer.text
    assert '"budget":{"limit":25.50,"used":0,"remaining":25.50,"percentage_used":0.00}' in answer.text
    assert answer.body == {
        "job_id": job_id,
        "status": "QUEUED",
        "progress": {"records_generated": 0, "target_records": 100, "percentage": 0},
        "cost": {"bedrock": 0, "fargate": 0, "s3": 0, "total": 0},
        "budget": {"limit": 25.5, "used": 0, "remaining": 25.5, "percentage_used": 0},
        "timing": {
            "created_at": item["created_at"],
            "started_at": None,
            "completed_at": None,
            "estimated_completion": None,
        },
        "tokens_used": 0,
    }


def test_running_job_extrapolates_completion_from_its_rate(aws: Any) -> None:
    job_id = create_job(aws, num_records=400)
    started = datetime(2026, 11, 28, 15, 0, 0, tzinfo=UTC)
    set_status(aws, job_id, "RUNNING", started_at=to_iso(started))
    roll_up(aws, job_id, records=100, tokens=1000, bedrock="0.5", fargate="0.25", s3="0.01")
    now = started + timedelta(minutes=10)  # 100 of 400 in 10 minutes: 30 more minutes
    service = DashboardService(
        jobs=JobAccess(JobsRepository(aws.client("dynamodb"), JOBS_TABLE)), clock=lambda: now
    )

    board = service.dashboard("user-1", job_id)

    assert board.timing.estimated_completion == to_iso(now + timedelta(minutes=30))
    assert board.progress.percentage == Decimal("25.00")
    assert board.cost.total == Decimal("0.76")


def test_budget_overshoot_is_shown_as_is_and_remaining_never_negative(aws: Any) -> None:
    job_id = create_job(aws, num_records=10, budget_limit="1")
    set_status(
        aws,
        job_id,
        "BUDGET_EXCEEDED",
        started_at="2026-11-28T15:00:00.000Z",
        completed_at="2026-11-28T15:30:00.000Z",
        budget_exceeded=True,
    )
    roll_up(aws, job_id, records=6, tokens=600, bedrock="1.1", fargate="0.05", s3="0.002")

    answer = dashboard_api.get(f"/dashboard/{job_id}")
    body = answer.body

    assert body["status"] == "BUDGET_EXCEEDED"
    assert '"budget":{"limit":1,"used":1.152,"remaining":0,"percentage_used":115.20}' in answer.text
    assert '"percentage":60.00}' in answer.text
    # A finished job's estimate is when it finished.
    assert (
        body["timing"]["completed_at"] == body["timing"]["estimated_completion"] == "2026-11-28T15:30:00.000Z"
    )


def test_another_users_job_is_403_with_no_data(aws: Any, dynamodb_calls: list[str]) -> None:
    job_id = create_job(aws, user="user-1")
    roll_up(aws, job_id, records=5, tokens=50, bedrock="0.1", fargate="0", s3="0")
    dynamodb_calls.clear()

    answer = dashboard_api.get(f"/dashboard/{job_id}", user="user-2")

    assert answer.status == 403
    assert answer.body == {"error": "Forbidden"}
    assert dynamodb_calls == ["GetItem"]


@pytest.mark.parametrize("job_id", [MISSING_ID, "not-a-job-id"])
def test_missing_job_is_404(aws: Any, job_id: str) -> None:
    answer = dashboard_api.get(f"/dashboard/{job_id}")
    assert answer.status == 404
    assert answer.body == {"error": "Job not found"}


def test_without_claims_is_401(aws: Any) -> None:
    job_id = create_job(aws)
    answer = dashboard_api.get(f"/dashboard/{job_id}", user=None)
    assert answer.status == 401
    assert answer.body == {"error": "Unauthorized"}
