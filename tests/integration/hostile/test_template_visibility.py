"""Visibility is per template: making a template private hides every version of it from others."""

from __future__ import annotations

from typing import Any

import pytest

from functions.seed_data.handler import lambda_handler as seed_handler
from functions.templates.handler import lambda_handler as templates_handler
from functions.templates.repository import TemplateRepository
from tests.integration.jobs.support import TEMPLATES_TABLE, get_job_item, job_body, jobs_api, upload_seed
from tests.support.http import ApiClient

pytestmark = pytest.mark.integration

templates_api = ApiClient(templates_handler)
seed_api = ApiClient(seed_handler)
OWNER, OTHER = "user-owner", "user-other"
STEPS = {"steps": [{"id": "bio", "prompt": "Write about {{ author.name }}"}]}


def _public_template_made_private(aws: Any) -> tuple[str, str]:
    created = templates_api.post(
        "/templates", user=OWNER, body={"name": "t", "is_public": True, "template_definition": STEPS}
    )
    template_id = created.body["template_id"]
    # Another user queues a job on version 1 while it is public.
    job = jobs_api.post(
        "/jobs", user=OTHER, body=job_body(template_id, upload_seed(aws, OTHER), template_version=1)
    )
    assert job.status == 201, job.body
    private = templates_api.put(
        f"/templates/{template_id}", user=OWNER, body={"is_public": False, "template_definition": STEPS}
    )
    assert private.status == 200
    return template_id, job.body["job_id"]


def test_every_earlier_version_is_hidden_from_others_once_private(aws) -> None:
    template_id, _ = _public_template_made_private(aws)

    for query in ({"version": "1"}, {"version": "2"}, None):
        assert templates_api.get(f"/templates/{template_id}", user=OTHER, query=query).status == 403
        owner_view = templates_api.get(f"/templates/{template_id}", user=OWNER, query=query)
        assert owner_view.status == 200
        assert owner_view.body["is_public"] is False
    listed = templates_api.get("/templates", user=OTHER)
    assert template_id not in [t["template_id"] for t in listed.body["templates"]]


def test_no_new_job_or_validation_can_use_an_earlier_public_version(aws) -> None:
    template_id, _ = _public_template_made_private(aws)
    seed = upload_seed(aws, OTHER, "other.jsonl")

    job = jobs_api.post("/jobs", user=OTHER, body=job_body(template_id, seed, template_version=1))
    check = seed_api.post(
        "/seed-data/validate",
        user=OTHER,
        body={"s3_key": seed, "template_id": template_id, "template_version": 1},
    )

    assert job.status == 404
    assert check.status == 403


def test_a_job_created_while_public_keeps_its_template(aws) -> None:
    template_id, job_id = _public_template_made_private(aws)
    # The worker reads the version by key (no visibility check), so the queued job can still run.
    version = TemplateRepository(aws.client("dynamodb"), TEMPLATES_TABLE).get_version(template_id, 1)
    assert version is not None
    assert version.template_definition.steps[0].prompt == STEPS["steps"][0]["prompt"]
    assert get_job_item(aws, job_id)["status"] == "QUEUED"


def test_making_it_public_again_shows_every_version_again(aws) -> None:
    template_id, _ = _public_template_made_private(aws)
    public = templates_api.put(
        f"/templates/{template_id}", user=OWNER, body={"is_public": True, "template_definition": STEPS}
    )
    assert public.status == 200
    answer = templates_api.get(f"/templates/{template_id}", user=OTHER, query={"version": "1"})
    assert answer.status == 200
    assert answer.body["is_public"] is True
