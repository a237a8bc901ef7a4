"""The template product routes over real HTTP on the local runtime: the dry run (prompts, offline
outputs, cost and estimate, a render error, the rate limit), the marketplace and import routes
next to ``/templates/{template_id}``, and a YAML export -> import round trip."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from tests.e2e.conftest import TEMPLATE, Runtime, create_template, upload_seed

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


def test_a_dry_run_renders_a_seed_record_through_the_offline_model_and_estimates_a_job(
    runtime: Runtime,
) -> None:
    author = runtime.client("dry-ada")
    template_id = create_template(author)
    seed_key = upload_seed(author)

    answer = author.post(
        f"/templates/{template_id}/test",
        json={"seed_data_path": seed_key, "record_index": 2, "num_records": 500},
    )

    assert answer.status_code == 200, answer.text
    body = answer.json()
    bio, tagline = body["steps"]
    assert bio["prompt"] == "Write a short bio of Author 2, a mystery writer."
    assert bio["output"].startswith("[offline ")
    assert tagline["prompt"] == "A tagline for: " + bio["output"]
    assert Decimal(str(body["record"]["cost"])) == Decimal(str(bio["cost"])) + Decimal(str(tagline["cost"]))
    assert Decimal(str(body["estimate"]["model_cost"])) == Decimal(str(body["record"]["cost"])) * 500
    assert body["estimate"]["assumptions"]
    # Nothing was created: no job, and the template is unchanged.
    assert author.get("/jobs").json()["jobs"] == []
    assert author.get(f"/templates/{template_id}").json()["version"] == 1


def test_a_dry_run_render_error_names_the_step_and_line_and_another_user_gets_403(runtime: Runtime) -> None:
    owner = runtime.client("dry-owner")
    broken = {
        "name": "Broken",
        "template_definition": {
            "steps": [{"id": "bio", "prompt": "Hi {{ author.name }}\n{{ author.nope }}"}]
        },
    }
    template_id = owner.post("/templates", json=broken).json()["template_id"]

    answer = owner.post(f"/templates/{template_id}/test", json={"seed_record": {"author": {"name": "Ada"}}})

    assert answer.status_code == 400, answer.text
    assert answer.json()["details"] == {"step": "bio", "line": 2}
    other = runtime.client("dry-other")
    refused = other.post(f"/templates/{template_id}/test", json={"seed_record": {"author": {"name": "Ada"}}})
    assert refused.status_code == 403


def test_past_ten_dry_runs_a_minute_the_answer_is_429_with_retry_after(runtime: Runtime) -> None:
    user = runtime.client("dry-busy")
    template_id = create_template(user)
    body = {"seed_record": {"author": {"name": "Ada", "genre": "poetry"}}, "call_model": False}
    # The limit counts per calendar minute: start the burst early in one, so it fits in it.
    if time.time() % 60 > 30:
        time.sleep(60 - time.time() % 60 + 0.5)

    answers = [user.post(f"/templates/{template_id}/test", json=body) for _ in range(12)]

    assert [a.status_code for a in answers] == [200] * 10 + [429] * 2, [a.text for a in answers[-2:]]
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
    assert answers[-1].json()["details"]["limit"] == 10


def test_marketplace_and_import_are_their_own_routes_and_yaml_round_trips(runtime: Runtime) -> None:
    publisher, reader = runtime.client("market-pub"), runtime.client("market-reader")
    public = publisher.post("/templates", json={**TEMPLATE, "name": "Zebra bios e2e", "is_public": True})
    assert public.status_code == 201, public.text
    template_id = public.json()["template_id"]

    listed = reader.get("/templates/marketplace", params={"q": "ZEBRA BIOS", "sort": "name"})
    assert listed.status_code == 200, listed.text
    assert [t["template_id"] for t in listed.json()["templates"]] == [template_id]

    exported = reader.get(f"/templates/{template_id}/export")
    assert exported.status_code == 200, exported.text
    assert exported.headers["Content-Type"].startswith("application/yaml")
    imported = reader.post(
        "/templates/import", data=exported.content, headers={"Content-Type": "application/yaml"}
    )
    assert imported.status_code == 201, imported.text
    copy = reader.get(f"/templates/{imported.json()['template_id']}").json()
    original = publisher.get(f"/templates/{template_id}").json()
    assert copy["template_definition"] == original["template_definition"]
    assert copy["is_owner"] is True

    forked = reader.post(f"/templates/{template_id}/fork")
    assert forked.status_code == 201, forked.text
    assert forked.json()["forked_from"] == {"template_id": template_id, "version": 1}
    versions = reader.get(f"/templates/{template_id}/versions").json()["versions"]
    assert [v["version"] for v in versions] == [1]
    popular = reader.get("/templates/marketplace", params={"q": "zebra", "sort": "popular"}).json()
    assert popular["templates"][0]["fork_count"] == 1
