"""The seed's Phase 3 verification workflow and a completing job, over real HTTP with real tokens."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from functions.worker.service import BUDGET_EXCEEDED
from tests.e2e.conftest import Runtime, create_job, create_template, upload_seed
from tests.support.remote import TERMINAL, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


def test_phase3_workflow_create_upload_validate_job_cancel_delete(runtime: Runtime) -> None:
    alice = runtime.client("phase3-alice")
    assert alice.get("/health").json() == {"status": "ok"}

    template_id = create_template(alice)
    fetched = alice.get(f"/templates/{template_id}")
    assert fetched.status_code == 200
    assert fetched.json()["version"] == 1

    seed_key = upload_seed(alice)
    validated = alice.post("/seed-data/validate", json={"s3_key": seed_key, "template_id": template_id})
    assert validated.status_code == 200, validated.text
    assert validated.json() == {"valid": True, "format": "jsonl", "records_checked": 5}

    # A large job, so it is still QUEUED or RUNNING when the cancel arrives.
    job_id = create_job(alice, template_id, seed_key, num_records=1_000_000, budget_limit="1000")
    job = alice.get(f"/jobs/{job_id}")
    assert job.status_code == 200
    assert job.json()["template_id"] == template_id
    assert "task_token" not in job.json()

    dashboard = alice.get(f"/dashboard/{job_id}")
    assert dashboard.status_code == 200
    assert dashboard.json()["progress"]["target_records"] == 1_000_000

    listed = alice.get("/jobs")
    assert listed.status_code == 200
    assert job_id in [j["job_id"] for j in listed.json()["jobs"]]

    cancel = alice.delete(f"/jobs/{job_id}")
    assert cancel.status_code == 202, cancel.text
    wait_for(lambda: alice.job_status(job_id) == "CANCELLED", timeout=60, what="CANCELLED")
    cancelled = alice.get(f"/jobs/{job_id}").json()
    assert cancelled["completed_at"]
    assert cancelled["cancel_requested_at"]

    delete = alice.delete(f"/jobs/{job_id}")
    assert delete.status_code == 202, delete.text
    wait_for(lambda: alice.get(f"/jobs/{job_id}").status_code == 404, timeout=60, what="404 after cleanup")
    assert alice.get(f"/dashboard/{job_id}").status_code == 404
    assert job_id not in [j["job_id"] for j in alice.get("/jobs").json()["jobs"]]


def test_small_job_completes_with_the_offline_model(runtime: Runtime) -> None:
    bob = runtime.client("complete-bob")
    template_id = create_template(bob)
    seed_key = upload_seed(bob)
    job_id = create_job(bob, template_id, seed_key, num_records=12)

    wait_for(lambda: bob.job_status(job_id) in TERMINAL, timeout=120, what="a terminal status")
    assert bob.job_status(job_id) == "COMPLETED"
    # The cost rollup follows the CostTracking stream: the dashboard catches up shortly after.
    board = wait_for(
        lambda: (d := bob.get(f"/dashboard/{job_id}").json())["progress"]["records_generated"] == 12 and d,
        timeout=30,
        what="all records on the dashboard",
    )
    assert board["status"] == "COMPLETED"
    assert Decimal(board["cost"]["total"]) > 0
    assert Decimal(board["budget"]["used"]) == Decimal(board["cost"]["total"])
    assert board["tokens_used"] > 0
    assert board["timing"]["started_at"]
    assert board["timing"]["completed_at"]
    assert board["timing"]["created_at"] <= board["timing"]["started_at"] <= board["timing"]["completed_at"]

    history = runtime.cli("executions", job_id)
    assert history.returncode == 0, history.stderr
    assert f"lifecycle execution {job_id}: SUCCEEDED" in history.stdout
    states = [
        line.split()[2:] for line in history.stdout.splitlines() if line.startswith("  ") and "ms" in line
    ]
    assert any("Mark job running" in " ".join(s) for s in states)
    assert any("completed" in " ".join(s).lower() for s in states)
    assert "✗" not in history.stdout

    events = runtime.cli("events", "--json")
    assert events.returncode == 0
    kinds = [
        e["detail-type"]
        for e in map(json.loads, events.stdout.splitlines())
        if (e.get("detail") or {}).get("job_id") == job_id
    ]
    assert kinds[0] == "Job Queued"
    assert "Job Started" in kinds
    assert kinds[-1] == "Job Completed"


def test_a_job_over_its_budget_ends_budget_exceeded_through_the_real_worker(runtime: Runtime) -> None:
    carol = runtime.client("budget-carol")
    template_id = create_template(carol)
    seed_key = upload_seed(carol)
    budget = Decimal("0.000001")  # the first batch costs more
    job_id = create_job(carol, template_id, seed_key, num_records=200, budget_limit=str(budget))

    wait_for(lambda: carol.job_status(job_id) in TERMINAL, timeout=120, what="a terminal status")
    job = carol.get(f"/jobs/{job_id}").json()
    assert (job["status"], job["error"]) == ("BUDGET_EXCEEDED", BUDGET_EXCEEDED)
    # The worker stopped early, and the rolled-up cost shows why.
    board = wait_for(
        lambda: Decimal(str((d := carol.get(f"/dashboard/{job_id}").json())["cost"]["total"])) > 0 and d,
        timeout=30,
        what="the cost on the dashboard",
    )
    assert Decimal(str(board["cost"]["total"])) >= budget
    assert 0 < board["progress"]["records_generated"] < 200


def test_url_and_unknown_execution_answer_clearly(runtime: Runtime) -> None:
    url = runtime.cli("url")
    assert url.returncode == 0
    assert url.stdout.strip() == runtime.api_url
    assert not url.stdout.strip().endswith("/")
    missing = runtime.cli("executions", "00000000-0000-4000-8000-000000000000")
    assert missing.returncode != 0
    assert "no execution for job" in missing.stderr
