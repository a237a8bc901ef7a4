"""The dashboard over HTTP (spec Task 6), on a job run to completion: progress, cost and budget as
JSON numbers in the spec's shape, and the export."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import requests

from tests.blackbox.conftest import Client
from tests.support.remote import wait_for

pytestmark = [pytest.mark.blackbox, pytest.mark.xdist_group("e2e")]


def test_a_small_job_runs_to_completion_and_its_dashboard_adds_up(alice: Client) -> None:
    template_id = alice.create_template()
    job_id = alice.create_job(template_id, alice.upload_seed(), num_records=3, budget_limit=1)
    assert (
        alice.wait_for_status(job_id, {"COMPLETED", "FAILED", "BUDGET_EXCEEDED", "CANCELLED"}) == "COMPLETED"
    )

    # The cost rollup follows the job: the dashboard catches up shortly after it completes.
    def rolled_up() -> dict | None:
        answer = alice.get(f"/dashboard/{job_id}")
        assert answer.status_code == 200
        board = json.loads(answer.text, parse_float=Decimal)
        return board if board["progress"]["records_generated"] == 3 else None

    board = wait_for(rolled_up, timeout=120, what="all records on the dashboard")
    assert board["job_id"] == job_id
    assert board["status"] == "COMPLETED"
    assert board["progress"] == {"records_generated": 3, "target_records": 3, "percentage": Decimal("100.00")}
    cost = board["cost"]
    assert set(cost) == {"bedrock", "fargate", "s3", "total"}
    assert all(isinstance(v, (int, Decimal)) for v in cost.values())  # numbers, not strings
    assert cost["total"] == cost["bedrock"] + cost["fargate"] + cost["s3"]
    assert cost["total"] > 0
    budget = board["budget"]
    assert budget["limit"] == 1
    assert budget["used"] == cost["total"]
    assert budget["remaining"] == budget["limit"] - budget["used"]
    assert set(board["timing"]) == {"created_at", "started_at", "completed_at", "estimated_completion"}
    assert board["tokens_used"] > 0

    download = alice.get(f"/jobs/{job_id}/download")
    assert download.status_code == 200
    lines = requests.get(download.json()["download_url"], timeout=30).text.splitlines()
    assert len(lines) == 3


def test_dashboard_of_a_missing_job_is_404(alice: Client) -> None:
    assert alice.get("/dashboard/00000000-0000-4000-8000-000000000000").status_code == 404
