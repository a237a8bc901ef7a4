"""A hostile user against the deployed API (issue 14), over real HTTP with real tokens: every answer
a clear 4xx through API Gateway, nothing written, nothing one user does visible to another."""

from __future__ import annotations

import json

import pytest
import requests

from local.runtime.tokens import DEMO_PASSWORD, cognito_username
from tests.e2e.conftest import TEMPLATE, Runtime, create_job, create_template, upload_seed
from tests.support.remote import TERMINAL, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

NOT_JSON = {"error": "Unsupported content type: send JSON with Content-Type: application/json"}


def _job_body(template_id: str, seed_key: str) -> dict[str, object]:
    return {
        "template_id": template_id,
        "seed_data_path": seed_key,
        "budget_limit": "5",
        "output_format": "JSONL",
        "num_records": 1,
    }


def test_hostile_bodies_are_4xx_and_create_nothing(runtime: Runtime) -> None:
    eve = runtime.client("hostile-bodies-eve")
    template_id = create_template(eve)
    seed_key = upload_seed(eve)
    headers = {"Content-Type": "application/json"}

    deep = eve.post("/jobs", data="[" * 1000 + "]" * 1000, headers=headers)
    huge = eve.post(
        "/seed-data/upload", data='{"filename": "a.json", "x": ' + "1" * 4301 + "}", headers=headers
    )
    no_boundary = eve.post("/templates", data="x", headers={"Content-Type": "multipart/form-data"})
    # `curl -F` on POST /jobs: a well-formed multipart form created a job (201) before.
    form = eve.post("/jobs", files={k: (None, str(v)) for k, v in _job_body(template_id, seed_key).items()})

    assert (deep.status_code, huge.status_code) == (400, 400), (deep.text, huge.text)
    assert "deeper than 32 levels" in deep.json()["error"]
    assert "more than 100 digits" in huge.json()["error"]
    assert (no_boundary.status_code, no_boundary.json()) == (415, NOT_JSON)
    assert (form.status_code, form.json()) == (415, NOT_JSON)
    assert eve.get("/jobs").json()["jobs"] == []


def test_a_template_bomb_is_a_quick_400(runtime: Runtime) -> None:
    eve = runtime.client("hostile-bombs-eve")
    for prompt in (
        "{{ 'x' * 10**9 }}",
        "{{ [1]*10**9 }}",
        "{{ ('x'*100000)|join('y'*100000) }}",
        "{{ 10**5000 }}",
    ):
        body = {"name": "bomb", "template_definition": {"steps": [{"id": "s", "prompt": prompt}]}}
        answer = eve.post("/templates", json=body)
        assert answer.status_code == 400, (prompt, answer.status_code, answer.text)
        assert answer.json()["details"] == {"step": "s", "line": 1}
    assert [t for t in eve.get("/templates").json()["templates"] if t["is_owner"]] == []


def test_a_refresh_token_is_not_a_bearer_token(runtime: Runtime) -> None:
    runtime.token("hostile-refresh-eve")  # creates the user and sets its password
    cognito = runtime.info.client("cognito-idp")
    username = cognito_username(cognito, runtime.info.user_pool_id, "hostile-refresh-eve")
    tokens = cognito.initiate_auth(
        ClientId=runtime.info.user_pool_client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": username, "PASSWORD": DEMO_PASSWORD},
    )["AuthenticationResult"]
    base = runtime.api_url

    refresh = requests.get(
        f"{base}/jobs", headers={"Authorization": f"Bearer {tokens['RefreshToken']}"}, timeout=30
    )
    id_token = requests.get(
        f"{base}/jobs", headers={"Authorization": f"Bearer {tokens['IdToken']}"}, timeout=30
    )

    assert refresh.status_code == 401
    assert id_token.status_code == 200


def test_unicode_upload_names_get_their_own_keys(runtime: Runtime) -> None:
    eve = runtime.client("hostile-names-eve")
    keys = []
    for name, record in (("文件.jsonl", {"n": 1}), ("数据.jsonl", {"n": 2})):
        upload = eve.post("/seed-data/upload", json={"filename": name}).json()
        sent = requests.put(
            upload["upload_url"],
            data=json.dumps(record).encode(),
            headers={"Content-Type": upload["content_type"]},
            timeout=30,
        )
        assert sent.status_code == 200, sent.text
        keys.append(upload["s3_key"])
    assert [key.rsplit("/", 1)[1] for key in keys] == ["文件.jsonl", "数据.jsonl"]


def test_making_a_template_private_hides_its_public_versions(runtime: Runtime) -> None:
    alice, mallory = runtime.client("visibility-alice"), runtime.client("visibility-mallory")
    created = alice.post("/templates", json={**TEMPLATE, "is_public": True})
    template_id = created.json()["template_id"]
    assert mallory.get(f"/templates/{template_id}", params={"version": 1}).status_code == 200

    private = alice.put(f"/templates/{template_id}", json={**TEMPLATE, "is_public": False})

    assert private.status_code == 200, private.text
    assert mallory.get(f"/templates/{template_id}", params={"version": 1}).status_code == 403
    assert alice.get(f"/templates/{template_id}", params={"version": 1}).status_code == 200


def test_an_idempotency_key_whose_job_was_deleted_is_a_409(runtime: Runtime) -> None:
    bob = runtime.client("idempotent-bob")
    body = _job_body(create_template(bob), upload_seed(bob))
    headers = {"Idempotency-Key": "create-once"}
    first = bob.post("/jobs", json=body, headers=headers)
    assert first.status_code == 201, first.text
    job_id = first.json()["job_id"]
    wait_for(lambda: bob.job_status(job_id) in TERMINAL, timeout=120, what="a terminal status")
    assert bob.delete(f"/jobs/{job_id}").status_code == 202
    wait_for(lambda: bob.get(f"/jobs/{job_id}").status_code == 404, timeout=60, what="404 after cleanup")

    again = bob.post("/jobs", json=body, headers=headers)

    assert again.status_code == 409, again.text
    assert job_id in again.json()["error"]
    assert create_job(bob, body["template_id"], str(body["seed_data_path"]), num_records=1) != job_id
