"""Jobs over HTTP (spec Tasks 1-3): create, list with pagination and status filter, get with config,
cancel and delete, and another user's job."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tests.blackbox.conftest import Client, job_body
from tests.support.remote import wait_for

pytestmark = [pytest.mark.blackbox, pytest.mark.xdist_group("e2e")]


def test_create_job_as_the_spec_writes_it_answers_201_queued(alice: Client) -> None:
    template_id = alice.create_template()
    seed = alice.upload_seed()
    answer = alice.post("/jobs", json=job_body(template_id, seed, num_records=5))
    assert answer.status_code == 201, answer.text
    body = answer.json()
    alice.jobs.append(body["job_id"])
    assert body["status"] == "QUEUED"
    assert set(body) == {"job_id", "status", "created_at"}


def test_get_job_carries_its_config_with_numbers_as_numbers(alice: Client) -> None:
    template_id = alice.create_template()
    seed = alice.upload_seed()
    job_id = alice.create_job(template_id, seed, budget_limit="12.5", num_records=4, priority=7)
    answer = alice.get(f"/jobs/{job_id}")
    assert answer.status_code == 200
    job = json.loads(answer.text, parse_float=Decimal)
    config = job["config"]
    assert set(config) == {
        "template_id",
        "template_version",
        "seed_data_path",
        "budget_limit",
        "output_format",
        "num_records",
        "task_size",
        "partition_strategy",
        "export_config",
        "priority",
    }
    assert {k: config[k] for k in ("template_id", "template_version", "seed_data_path")} == {
        "template_id": template_id,
        "template_version": 1,
        "seed_data_path": seed,
    }
    assert (config["budget_limit"], config["output_format"], config["num_records"], config["priority"]) == (
        Decimal("12.5"),
        "JSONL",
        4,
        7,
    )
    assert isinstance(job["cost"]["total"], (int, Decimal))
    assert job["status"] in {"QUEUED", "RUNNING", "COMPLETED"}


def test_a_folder_and_an_s3_uri_are_seeds_too(alice: Client) -> None:
    template_id = alice.create_template()
    seed = alice.upload_seed()
    folder = seed.rsplit("/", 1)[0] + "/"  # the caller's own seed-data/{sub}/: every upload
    job_id = alice.create_job(template_id, folder, num_records=2)
    assert alice.get(f"/jobs/{job_id}").json()["config"]["seed_data_path"] == folder
    bucket = alice.seeds[-1][0]
    job_id = alice.create_job(template_id, f"s3://{bucket}/{seed}", num_records=2)
    assert alice.get(f"/jobs/{job_id}").json()["config"]["seed_data_path"] == seed


def test_list_pages_newest_first_and_filters_by_status(alice: Client) -> None:
    template_id = alice.create_template()
    seed = alice.upload_seed()
    made = [alice.create_job(template_id, seed, num_records=2) for _ in range(3)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"last_key": cursor} if cursor else {})}
        page = alice.get("/jobs", params=params).json()
        assert len(page["jobs"]) <= 2
        seen += [job["job_id"] for job in page["jobs"]]
        cursor = page.get("last_key")
        if not cursor:
            break
    positions = [seen.index(job_id) for job_id in made]
    assert positions == sorted(positions, reverse=True)  # newest first
    summary = alice.get("/jobs", params={"limit": 1}).json()["jobs"][0]
    assert "config" not in summary  # the list stays a summary
    assert isinstance(summary["budget_limit"], (int, float))
    queued = alice.get("/jobs", params={"status": "QUEUED"}).json()["jobs"]
    assert all(job["status"] == "QUEUED" for job in queued)


def test_delete_cancels_an_active_job_then_deletes_it(alice: Client) -> None:
    template_id = alice.create_template()
    seed = alice.upload_seed()
    job_id = alice.create_job(template_id, seed, num_records=1000, budget_limit=1)
    answer = alice.delete(f"/jobs/{job_id}")
    assert answer.status_code in (202, 409), answer.text  # 409: it finished first
    status = alice.wait_for_status(job_id, {"CANCELLED", "COMPLETED", "FAILED", "BUDGET_EXCEEDED"})
    assert status in {"CANCELLED", "COMPLETED", "BUDGET_EXCEEDED"}
    assert alice.delete(f"/jobs/{job_id}").status_code == 202
    wait_for(lambda: alice.get(f"/jobs/{job_id}").status_code == 404, timeout=300, what="job deleted")


def test_another_users_job_is_403(alice: Client, bob: Client) -> None:
    template_id = alice.create_template()
    job_id = alice.create_job(template_id, alice.upload_seed(), num_records=2)
    for answer in (
        bob.get(f"/jobs/{job_id}"),
        bob.delete(f"/jobs/{job_id}"),
        bob.get(f"/dashboard/{job_id}"),
    ):
        assert answer.status_code == 403
        assert job_id not in answer.text
