"""The spec's Task 7 integration suite: black-box tests over HTTP against any deployment.

Driven by three variables, as the spec writes them:

    API_ENDPOINT   the API base URL (stack output ApiEndpoint)
    USER_POOL_ID   the Cognito user pool (UserPoolId)
    CLIENT_ID      its app client (UserPoolClientId), with USER_PASSWORD_AUTH enabled

With all three set (``make test-deployed``) the suite runs against that deployment with the AWS
credentials of the environment (they need cognito-idp:AdminConfirmSignUp and AdminDeleteUser on the
pool, and s3:DeleteObject on the deployment's bucket to remove the seed files it uploaded). Without
them (``make test``) it starts the local runtime itself, shared with the e2e tier.

Every session signs up throwaway users (``sign_up``, ``admin_confirm_sign_up``, ``initiate_auth``
with ``USER_PASSWORD_AUTH``), and at the end deletes what it made: jobs (cancelled if still active,
then deleted, until GET answers 404), templates, uploaded seed files and the users. So it runs twice
in a row green and leaves nothing behind.

This tier lives in tests/blackbox (marker ``blackbox``), apart from tests/integration, which holds
the in-process moto tier.
"""

from __future__ import annotations

import json
import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

import boto3
import pytest

from tests.support.remote import TERMINAL, HttpClient, wait_for

DEPLOYED_VARIABLES = ("API_ENDPOINT", "USER_POOL_ID", "CLIENT_ID")
# Jobs in AWS wait for a Fargate worker to start (a minute or two); locally they take seconds.
JOB_TIMEOUT = float(os.environ.get("BLACKBOX_JOB_TIMEOUT", "900"))


@dataclass(frozen=True)
class Target:
    api: str
    user_pool_id: str
    client_id: str
    cognito: Any
    s3: Any
    deployed: bool


def _deployed_target() -> Target | None:
    present = [name for name in DEPLOYED_VARIABLES if os.environ.get(name)]
    if not present:
        return None
    if len(present) != len(DEPLOYED_VARIABLES):
        missing = sorted(set(DEPLOYED_VARIABLES) - set(present))
        pytest.exit(f"set all of {', '.join(DEPLOYED_VARIABLES)} (missing: {', '.join(missing)})", 2)
    return Target(
        api=os.environ["API_ENDPOINT"].rstrip("/"),
        user_pool_id=os.environ["USER_POOL_ID"],
        client_id=os.environ["CLIENT_ID"],
        cognito=boto3.client("cognito-idp"),
        s3=boto3.client("s3"),
        deployed=True,
    )


@pytest.fixture(scope="session")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    deployed = _deployed_target()
    if deployed is not None:
        yield deployed
        return
    from tests.e2e.conftest import shared_runtime

    with shared_runtime(tmp_path_factory) as runtime:
        info = runtime.info
        yield Target(
            api=info.api_url.rstrip("/"),
            user_pool_id=info.user_pool_id,
            client_id=info.user_pool_client_id,
            cognito=info.client("cognito-idp"),
            s3=info.client("s3"),
            deployed=False,
        )


# ----------------------------------------------------------------------------- HTTP client


@dataclass(kw_only=True)
class Client(HttpClient):
    """One signed-up user's HTTP client (or an anonymous one); records what it creates for cleanup."""

    target: Target
    email: str = ""
    templates: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    seeds: list[tuple[str, str]] = field(default_factory=list)  # (bucket, key)

    # ------------------------------------------------------------------ steps that create things

    def create_template(self, **overrides: Any) -> str:
        answer = self.post("/templates", json=template_body(**overrides))
        assert answer.status_code == 201, answer.text
        template_id = str(answer.json()["template_id"])
        self.templates.append(template_id)
        return template_id

    def upload_seed(self, name: str | None = None, records: list[dict[str, Any]] | None = None) -> str:
        """Upload JSON Lines through a presigned URL (a plain HTTP PUT); answers the S3 key."""
        name = name or f"blackbox-{uuid.uuid4().hex[:8]}.jsonl"
        body = "".join(json.dumps(r) + "\n" for r in records or SEED_RECORDS).encode()
        upload = self.upload(name, body)
        key = str(upload["s3_key"])
        self.seeds.append((bucket_of(upload["upload_url"], key), key))
        return key

    def create_job(self, template_id: str, seed: str, **overrides: Any) -> str:
        answer = self.post("/jobs", json=job_body(template_id, seed, **overrides))
        assert answer.status_code == 201, answer.text
        job_id = str(answer.json()["job_id"])
        self.jobs.append(job_id)
        return job_id

    def wait_for_status(self, job_id: str, statuses: AbstractSet[str], timeout: float = JOB_TIMEOUT) -> str:
        status = wait_for(
            lambda: (s := self.job_status(job_id)) in statuses and s, timeout=timeout, what=f"{statuses}"
        )
        return str(status)

    # ------------------------------------------------------------------ cleanup

    def delete_jobs(self) -> None:
        """Cancel the active ones, then delete each until GET answers 404."""
        for job_id in reversed(self.jobs):
            self._delete_job(job_id)

    def delete_templates_and_seeds(self) -> None:
        for template_id in reversed(self.templates):
            wait_for(
                lambda template_id=template_id: (
                    self.delete(f"/templates/{template_id}").status_code in (200, 404)
                ),
                timeout=120,
                what=f"template {template_id} deleted",
            )
        for bucket, key in self.seeds:
            self.target.s3.delete_object(Bucket=bucket, Key=key)

    def _delete_job(self, job_id: str) -> None:
        status = self.job_status(job_id)
        if status is None:
            return
        if status not in TERMINAL:
            self.delete(f"/jobs/{job_id}")
            self.wait_for_status(job_id, TERMINAL)
        self.delete(f"/jobs/{job_id}")
        wait_for(lambda: self.job_status(job_id) is None, timeout=300, what=f"job {job_id} deleted")


def bucket_of(presigned_url: str, key: str) -> str:
    """The bucket a presigned URL names, path-style (``/bucket/key``) or virtual-hosted."""
    url = urlparse(presigned_url)
    path = unquote(url.path)
    if path.endswith("/" + key) and path != "/" + key:
        return path[1 : -len(key) - 1]
    return url.hostname.split(".s3")[0] if url.hostname else ""


# ----------------------------------------------------------------------------- users


def sign_up(target: Target) -> tuple[str, str]:
    """A throwaway user, as the spec's conftest makes one: sign_up, admin_confirm_sign_up,
    initiate_auth (USER_PASSWORD_AUTH). Answers (email, ID token)."""
    email = f"blackbox+{uuid.uuid4().hex}@example.com"
    password = f"Bb1!{secrets.token_urlsafe(12)}"
    target.cognito.sign_up(
        ClientId=target.client_id,
        Username=email,
        Password=password,
        UserAttributes=[{"Name": "email", "Value": email}],
    )
    target.cognito.admin_confirm_sign_up(UserPoolId=target.user_pool_id, Username=email)
    answer = target.cognito.initiate_auth(
        ClientId=target.client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": email, "PASSWORD": password},
    )
    return email, str(answer["AuthenticationResult"]["IdToken"])


@pytest.fixture(scope="session")
def make_user(target: Target) -> Iterator[Callable[[], Client]]:
    made: list[Client] = []

    def make() -> Client:
        email, token = sign_up(target)
        client = Client(base=target.api, token=token, target=target, email=email)
        made.append(client)
        return client

    yield make
    # Every user's jobs first: a job may use another user's public template.
    errors: list[str] = []
    for step in (Client.delete_jobs, Client.delete_templates_and_seeds):
        for client in made:
            try:
                step(client)
            except BaseException as error:
                errors.append(f"{client.email}: {error!r}")
    for client in made:
        errors += _leftovers(client)
        target.cognito.admin_delete_user(UserPoolId=target.user_pool_id, Username=client.email)
    assert not errors, errors


def _leftovers(client: Client) -> list[str]:
    """What a user's cleanup left behind (nothing, or the test fails)."""
    left = [f"job {j}" for j in client.jobs if client.job_status(j) is not None]
    for bucket, key in client.seeds[:1]:
        prefix = key.rsplit("/", 1)[0] + "/"
        listed = client.target.s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        left += [f"s3://{bucket}/{item['Key']}" for item in listed]
    return left


@pytest.fixture(scope="session")
def alice(make_user: Callable[[], Client]) -> Client:
    return make_user()


@pytest.fixture(scope="session")
def bob(make_user: Callable[[], Client]) -> Client:
    return make_user()


@pytest.fixture(scope="session")
def anonymous(target: Target) -> Client:
    return Client(base=target.api, target=target)


# ----------------------------------------------------------------------------- request bodies

SEED_RECORDS = [{"author": {"name": f"Author {i}", "biography": "A writer."}} for i in range(3)]


def template_body(**overrides: Any) -> dict[str, Any]:
    """The spec's Task 4 example (its model alias included)."""
    body: dict[str, Any] = {
        "name": f"Blackbox {uuid.uuid4().hex[:8]}",
        "template_definition": {
            "steps": [
                {
                    "id": "question",
                    "model": "llama-3.1-8b",
                    "prompt": "Generate a question about {{ author.name }}",
                }
            ]
        },
    }
    body.update(overrides)
    return body


def job_body(template_id: str, seed: str, **overrides: Any) -> dict[str, Any]:
    """The spec's Task 1 example."""
    body: dict[str, Any] = {
        "template_id": template_id,
        "seed_data_path": seed,
        "budget_limit": 50.0,
        "output_format": "JSONL",
        "num_records": 100,
    }
    body.update(overrides)
    return body
