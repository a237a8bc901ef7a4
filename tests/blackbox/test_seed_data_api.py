"""Seed data over HTTP (spec Task 5): a presigned URL, a real upload to it, validation of good and bad
data, of a folder, and of another user's files."""

from __future__ import annotations

import pytest

from tests.blackbox.conftest import Client

pytestmark = [pytest.mark.blackbox, pytest.mark.xdist_group("e2e")]


def test_upload_url_is_presigned_for_15_minutes_under_the_callers_prefix(alice: Client) -> None:
    answer = alice.post(
        "/seed-data/upload", json={"filename": "test-seed.json", "content_type": "application/json"}
    )
    assert answer.status_code == 200, answer.text
    upload = answer.json()
    assert upload["expires_in"] == 900
    assert upload["s3_key"].startswith("seed-data/")
    assert upload["s3_key"].endswith("/test-seed.json")
    assert upload["upload_url"].startswith("http")


def test_uploaded_data_validates_against_the_template(alice: Client) -> None:
    template_id = alice.create_template()
    good = alice.upload_seed()
    answer = alice.post("/seed-data/validate", json={"s3_key": good, "template_id": template_id})
    assert answer.status_code == 200, answer.text
    assert answer.json()["valid"] is True
    bad = alice.upload_seed(records=[{"author": {"biography": "no name"}}])
    answer = alice.post("/seed-data/validate", json={"s3_key": bad, "template_id": template_id})
    assert answer.status_code == 400
    assert answer.json()["valid"] is False
    assert answer.json()["missing_fields"] == ["author.name"]
    # A folder is every file in it: the bad one included.
    folder = good.rsplit("/", 1)[0] + "/"
    answer = alice.post("/seed-data/validate", json={"s3_key": folder, "template_id": template_id})
    assert answer.json()["valid"] is False


def test_another_users_seed_is_403(alice: Client, bob: Client) -> None:
    template_id = bob.create_template()
    theirs = alice.upload_seed()
    answer = bob.post("/seed-data/validate", json={"s3_key": theirs, "template_id": template_id})
    assert answer.status_code == 403
    answer = bob.post(
        "/jobs",
        json={
            "template_id": template_id,
            "seed_data_path": theirs,
            "budget_limit": 1,
            "output_format": "JSONL",
            "num_records": 1,
        },
    )
    assert answer.status_code == 403
    answer = bob.post(
        "/jobs",
        json={
            "template_id": template_id,
            "seed_data_path": "s3://another-bucket/x.jsonl",
            "budget_limit": 1,
            "output_format": "JSONL",
            "num_records": 1,
        },
    )
    assert answer.status_code == 403
