"""Templates over HTTP (spec Task 4): create (model names checked), list (own + public, is_public),
versions, get by version, delete refused while a job uses it, another user's private template."""

from __future__ import annotations

import pytest

from tests.blackbox.conftest import Client, template_body

pytestmark = [pytest.mark.blackbox, pytest.mark.xdist_group("e2e")]


def test_create_the_specs_example_and_read_it_back_as_written(alice: Client) -> None:
    answer = alice.post("/templates", json=template_body())
    assert answer.status_code == 201, answer.text
    created = answer.json()
    alice.templates.append(created["template_id"])
    assert created["version"] == 1
    assert created["schema_requirements"] == ["author.name"]
    template = alice.get(f"/templates/{created['template_id']}").json()
    assert template["template_definition"]["steps"][0]["model"] == "llama-3.1-8b"


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"id": "q", "prompt": "{{ author.name "}, "syntax"),
        ({"id": "q", "prompt": "{{ author.name }}", "model": "gpt-9"}, "unknown model 'gpt-9'"),
        ({"id": "q", "prompt": "{{ author.name }}", "model_tier": "gold"}, "unknown model_tier 'gold'"),
    ],
)
def test_an_invalid_template_is_400(alice: Client, step: dict, message: str) -> None:
    answer = alice.post("/templates", json=template_body(template_definition={"steps": [step]}))
    assert answer.status_code == 400
    assert message in answer.json()["error"]


def test_models_lists_what_a_step_may_name(alice: Client, anonymous: Client) -> None:
    answer = alice.get("/models")
    assert answer.status_code == 200
    aliases = {m["alias"] for m in answer.json()["models"]}
    assert {"llama-3.1-8b", "llama-3.1-70b", "claude-3.5-sonnet", "mistral-7b"} <= aliases
    assert all(isinstance(m["input_per_million"], (int, float)) for m in answer.json()["models"])
    assert anonymous.get("/models").status_code == 401


def test_update_writes_version_2_and_version_1_stays(alice: Client) -> None:
    template_id = alice.create_template()
    new = {"steps": [{"id": "bio", "model": "mistral-7b", "prompt": "{{ author.biography }}"}]}
    answer = alice.put(f"/templates/{template_id}", json={"name": "Updated", "template_definition": new})
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == 2
    assert alice.get(f"/templates/{template_id}").json()["name"] == "Updated"
    first = alice.get(f"/templates/{template_id}", params={"version": 1}).json()
    assert first["version"] == 1
    assert first["schema_requirements"] == ["author.name"]


def test_list_shows_own_and_public_and_filters_by_is_public(alice: Client, bob: Client) -> None:
    mine = alice.create_template()
    theirs_public = bob.create_template(is_public=True)
    theirs_private = bob.create_template()
    listed = {t["template_id"]: t for t in _all(alice, {})}
    assert mine in listed
    assert theirs_public in listed
    assert theirs_private not in listed
    assert listed[mine]["schema_requirements"] == ["author.name"]
    public = {t["template_id"] for t in _all(alice, {"is_public": "true"})}
    assert theirs_public in public
    assert mine not in public
    private = {t["template_id"] for t in _all(alice, {"is_public": "false"})}
    assert mine in private
    assert theirs_public not in private


def test_another_users_private_template_is_403(alice: Client, bob: Client) -> None:
    template_id = bob.create_template()
    assert alice.get(f"/templates/{template_id}").status_code == 403
    assert alice.put(f"/templates/{template_id}", json=template_body()).status_code == 403
    assert alice.delete(f"/templates/{template_id}").status_code == 403


def test_a_template_used_by_a_job_cannot_be_deleted(alice: Client) -> None:
    template_id = alice.create_template()
    alice.create_job(template_id, alice.upload_seed(), num_records=2)
    answer = alice.delete(f"/templates/{template_id}")
    assert answer.status_code == 409
    assert alice.get(f"/templates/{template_id}").status_code == 200


def _all(client: Client, params: dict) -> list[dict]:
    found: list[dict] = []
    cursor = None
    while True:
        page = client.get(
            "/templates", params={**params, "limit": 100, **({"last_key": cursor} if cursor else {})}
        )
        assert page.status_code == 200, page.text
        found += page.json()["templates"]
        cursor = page.json().get("last_key")
        if not cursor:
            return found
