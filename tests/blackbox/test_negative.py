"""The spec's negative cases (Task 7): missing fields and invalid JSON are 400 with details, missing
resources 404, no token 401 before anything else, a body that is not JSON 415."""

from __future__ import annotations

import pytest

from tests.blackbox.conftest import Client

pytestmark = [pytest.mark.blackbox, pytest.mark.xdist_group("e2e")]

MISSING = "00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/jobs",
            {"template_id": "tpl-123", "budget_limit": 50, "num_records": 100},
        ),  # the spec's Task 3 body
        ("/templates", {"name": "no definition"}),
        ("/seed-data/upload", {}),
        ("/seed-data/validate", {"s3_key": "x"}),
    ],
)
def test_missing_required_fields_are_400_with_details(alice: Client, path: str, body: dict) -> None:
    answer = alice.post(path, json=body)
    assert answer.status_code == 400, answer.text
    details = answer.json()["details"]
    assert details
    assert all({"loc", "msg"} <= set(d) for d in details)


@pytest.mark.parametrize("path", ["/jobs", "/templates", "/seed-data/upload", "/seed-data/validate"])
def test_invalid_json_is_400(alice: Client, path: str) -> None:
    answer = alice.post(path, data="{not json", headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert "error" in answer.json()


def test_wrong_types_and_values_are_400(alice: Client) -> None:
    template_id = alice.create_template()
    seed = alice.upload_seed()
    for bad in (
        {"num_records": "many"},
        {"budget_limit": 5000},
        {"budget_limit": "abc"},
        {"output_format": "XML"},
    ):
        body = {
            "template_id": template_id,
            "seed_data_path": seed,
            "budget_limit": 5,
            "output_format": "JSONL",
            "num_records": 10,
            **bad,
        }
        assert alice.post("/jobs", json=body).status_code == 400, bad


def test_missing_resources_are_404(alice: Client) -> None:
    assert alice.get(f"/jobs/{MISSING}").status_code == 404
    assert alice.get(f"/templates/{MISSING}").status_code == 404
    template_id = alice.create_template()
    body = {
        "template_id": MISSING,
        "seed_data_path": alice.upload_seed(),
        "budget_limit": 5,
        "output_format": "JSONL",
        "num_records": 1,
    }
    assert alice.post("/jobs", json=body).status_code == 404
    assert alice.get(f"/templates/{template_id}", params={"version": 9}).status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/jobs"),
        ("POST", "/jobs"),
        ("GET", "/templates"),
        ("POST", "/seed-data/upload"),
        ("GET", f"/dashboard/{MISSING}"),
        ("GET", "/models"),
    ],
)
def test_no_token_is_401(anonymous: Client, method: str, path: str) -> None:
    assert anonymous.request(method, path, data="{not json").status_code == 401


def test_a_body_that_is_not_json_is_415(alice: Client) -> None:
    answer = alice.post(
        "/templates", data="name=x", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert answer.status_code == 415


def test_health_needs_no_token(anonymous: Client) -> None:
    answer = anonymous.get("/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}
