"""Integer and boolean body fields take JSON integers and booleans only: `true` is not 1, `"5"` is not 5.

Rejected input is a 400 (the validation status once w10-spec's 422 -> 400 change is merged).
"""

from __future__ import annotations

from typing import Any

import pytest

from functions.seed_data.handler import lambda_handler as seed_handler
from functions.templates.handler import lambda_handler as templates_handler
from tests.integration.jobs.support import (
    JOBS_TABLE,
    TEMPLATES_TABLE,
    job_body,
    jobs_api,
    make_template,
    upload_seed,
)
from tests.support.http import ApiClient

pytestmark = pytest.mark.integration


def _count(aws: Any, table: str) -> int:
    return int(aws.client("dynamodb").scan(TableName=table)["Count"])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_records", True),
        ("num_records", "5"),
        ("num_records", 5.5),
        ("priority", "3"),
        ("priority", False),
        ("template_version", True),
        ("template_version", "1"),
    ],
)
def test_a_job_with_a_non_integer_count_is_400_and_creates_nothing(aws, field: str, value: Any) -> None:
    body = job_body(make_template(aws, "user-1"), upload_seed(aws, "user-1"), **{field: value})
    answer = jobs_api.post("/jobs", user="user-1", body=body)
    assert answer.status == 400, answer.body
    assert answer.body["details"][0]["loc"][-1] == field
    assert _count(aws, JOBS_TABLE) == 0


@pytest.mark.parametrize("num_records", [5, 5.0])  # 5.0 is an integer to JSON Schema too
def test_the_same_job_with_integers_is_created(aws, num_records: float) -> None:
    body = job_body(
        make_template(aws, "user-1"), upload_seed(aws, "user-1"), num_records=num_records, priority=3
    )
    created = jobs_api.post("/jobs", user="user-1", body=body)
    assert created.status == 201
    assert jobs_api.get(f"/jobs/{created.body['job_id']}", user="user-1").body["num_records"] == 5


@pytest.mark.parametrize("value", ["true", 1, "yes"])
def test_is_public_takes_a_json_boolean_only(aws, value: Any) -> None:
    answer = ApiClient(templates_handler).post(
        "/templates",
        body={
            "name": "t",
            "is_public": value,
            "template_definition": {"steps": [{"id": "a", "prompt": "x"}]},
        },
    )
    assert answer.status == 400, answer.body
    assert _count(aws, TEMPLATES_TABLE) == 0


@pytest.mark.parametrize("value", [True, "1"])
def test_seed_validation_template_version_is_an_integer(aws, value: Any) -> None:
    answer = ApiClient(seed_handler).post(
        "/seed-data/validate",
        body={"s3_key": "seed-data/user-1/a.jsonl", "template_id": "t", "template_version": value},
    )
    assert answer.status == 400, answer.body
