"""Two users: every route on the other's resources is 403/404; missing, forged, expired tokens are 401."""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests

from tests.e2e.conftest import Client, Runtime, create_job, create_template, upload_seed

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


@pytest.fixture(scope="module")
def owned(runtime: Runtime) -> dict[str, str]:
    """Alice's private template, seed upload and (cancelled, so it stays put) job."""
    alice = runtime.client("iso-alice")
    template_id = create_template(alice)
    seed_key = upload_seed(alice)
    job_id = create_job(alice, template_id, seed_key, num_records=1_000_000, budget_limit="1000")
    assert alice.delete(f"/jobs/{job_id}").status_code == 202
    return {"template_id": template_id, "seed_key": seed_key, "job_id": job_id, "token": alice.token or ""}


def test_every_route_on_another_users_resources_is_403_or_404(
    runtime: Runtime, owned: dict[str, str]
) -> None:
    mallory = runtime.client("iso-mallory")
    t, j, key = owned["template_id"], owned["job_id"], owned["seed_key"]
    definition = {"steps": [{"id": "x", "prompt": "{{ author.name }}"}]}
    attempts = {
        ("GET", f"/templates/{t}"): {},
        ("GET", f"/templates/{t}?version=1"): {},
        ("PUT", f"/templates/{t}"): {"json": {"template_definition": definition}},
        ("DELETE", f"/templates/{t}"): {},
        ("POST", f"/templates/{t}/test"): {"json": {"seed_record": {"author": {"name": "x"}}}},
        ("GET", f"/templates/{t}/versions"): {},
        ("POST", f"/templates/{t}/fork"): {},
        ("GET", f"/templates/{t}/export"): {},
        ("GET", f"/jobs/{j}"): {},
        ("DELETE", f"/jobs/{j}"): {},
        ("GET", f"/jobs/{j}/download"): {},
        ("GET", f"/dashboard/{j}"): {},
        ("POST", "/seed-data/validate"): {"json": {"s3_key": key, "template_id": t}},
        ("POST", "/jobs"): {
            "json": {
                "template_id": t,
                "seed_data_path": key,
                "budget_limit": "1",
                "output_format": "JSONL",
                "num_records": 1,
            }
        },
    }
    for (method, path), kwargs in attempts.items():
        answer = mallory.request(method, path, **kwargs)
        assert answer.status_code in (403, 404), f"{method} {path}: {answer.status_code} {answer.text}"
        assert "error" in answer.json()
    # Listings never show the other user's resources.
    assert t not in [x["template_id"] for x in mallory.get("/templates").json()["templates"]]
    assert j not in [x["job_id"] for x in mallory.get("/jobs").json()["jobs"]]
    # Mallory's own template cannot be pointed at Alice's seed either (the key is under Alice's prefix).
    own_template = create_template(mallory)
    stolen = mallory.post("/seed-data/validate", json={"s3_key": key, "template_id": own_template})
    assert stolen.status_code in (403, 404)
    # And nothing changed for Alice.
    alice = Client(runtime.api_url, owned["token"])
    assert alice.get(f"/templates/{t}").status_code == 200
    assert alice.get(f"/jobs/{j}").status_code == 200


def _forge(token: str, **claims: object) -> str:
    header, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body.update(claims)
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def _expired_token(runtime: Runtime, user: str) -> str:
    """A real ID token from the pool's own client, issued with a 1-second validity, then expired.

    MiniStack accepts a validity in seconds (AWS's minimum is 5 minutes); the client's settings are
    restored right after the token is issued.
    """
    cognito = runtime.info.client("cognito-idp")
    pool, client_id = runtime.info.user_pool_id, runtime.info.user_pool_client_id
    current = cognito.describe_user_pool_client(UserPoolId=pool, ClientId=client_id)["UserPoolClient"]
    settings = {
        k: v
        for k, v in current.items()
        if k not in ("ClientSecret", "CreationDate", "LastModifiedDate") and v not in ("", None, [], {})
    }
    units = {**(current.get("TokenValidityUnits") or {}), "IdToken": "seconds"}
    cognito.update_user_pool_client(**{**settings, "IdTokenValidity": 1, "TokenValidityUnits": units})
    try:
        token = runtime.token(user)
    finally:
        cognito.update_user_pool_client(**settings)
    time.sleep(2.5)
    return token


def test_missing_forged_and_expired_tokens_are_401(runtime: Runtime, owned: dict[str, str]) -> None:
    base = runtime.api_url
    real = owned["token"]
    other = runtime.token("iso-mallory")
    header, payload, _ = real.split(".")
    bad = {
        "missing": {},
        "empty bearer": {"Authorization": "Bearer "},
        "not a jwt": {"Authorization": "Bearer not-a-token"},
        "claims changed": {"Authorization": f"Bearer {_forge(real, sub='someone-else')}"},
        "signature swapped": {"Authorization": f"Bearer {header}.{payload}.{other.split('.')[2]}"},
        "unsigned": {
            "Authorization": f"Bearer {_forge(real, exp=int(time.time()) + 3600).rsplit('.', 1)[0]}."
        },
        "expired": {"Authorization": f"Bearer {_expired_token(runtime, 'iso-expired')}"},
    }
    for name, headers in bad.items():
        for method, path in (("GET", "/jobs"), ("GET", f"/jobs/{owned['job_id']}"), ("POST", "/templates")):
            answer = requests.request(method, base + path, headers=headers, timeout=30, json={})
            assert answer.status_code == 401, f"{name} {method} {path}: {answer.status_code} {answer.text}"
    # The real token still works, and /health needs none.
    assert (
        requests.get(base + "/jobs", headers={"Authorization": f"Bearer {real}"}, timeout=30).status_code
        == 200
    )
    assert requests.get(base + "/health", timeout=30).status_code == 200
