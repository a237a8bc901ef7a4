"""Template bombs and malformed seeds through the real handlers: a 400 naming where, never a 5xx."""

from __future__ import annotations

from typing import Any

import pytest

from functions.common import settings as s
from functions.seed_data.handler import lambda_handler as seed_handler
from functions.templates.handler import lambda_handler as templates_handler
from tests.support.http import ApiClient

pytestmark = pytest.mark.integration

templates_api = ApiClient(templates_handler)
seed_api = ApiClient(seed_handler)
TEMPLATES_TABLE = s.TemplatesTableSettings().templates_table
BUCKET = s.BucketSettings().bucket_name


def _template(prompt: str, user: str = "user-1") -> Any:
    return templates_api.post(
        "/templates",
        user=user,
        body={"name": "t", "template_definition": {"steps": [{"id": "s", "prompt": prompt}]}},
    )


# The exact templates (201 after 19 s, 502, 500 before).
@pytest.mark.parametrize(
    "prompt",
    ["{{ 'x' * 10**9 }}", "{{ [1]*10**9 }}", "{{ ('x'*100000)|join('y'*100000) }}", "{{ 10**5000 }}"],
)
def test_template_bombs_are_400_and_store_nothing(aws, prompt: str) -> None:
    answer = _template(prompt)
    assert answer.status == 400, answer.body
    assert answer.body["error"].startswith("Step 's', line 1: ")
    assert answer.body["details"] == {"step": "s", "line": 1}
    assert aws.client("dynamodb").scan(TableName=TEMPLATES_TABLE)["Count"] == 0


def test_a_bomb_in_an_update_is_400_too(aws) -> None:
    created = _template("Hello {{ author.name }}")
    assert created.status == 201
    answer = templates_api.put(
        f"/templates/{created.body['template_id']}",
        user="user-1",
        body={"template_definition": {"steps": [{"id": "s", "prompt": "{{ 'x' * 10**9 }}"}]}},
    )
    assert answer.status == 400


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ('{"author": {"name": "Eve"}, "n": ' + "7" * 5000 + "}", "integer with more than 100 digits"),
        ('{"a": ' * 100_000 + "1" + "}" * 100_000, "deeper than 64 levels"),
    ],
    ids=["5000-digit-number", "100k-deep-object"],
)
def test_seed_validation_reports_a_malformed_record_with_its_line(aws, bad: str, reason: str) -> None:
    created = _template("Hello {{ author.name }}")
    key = "seed-data/user-1/bad.jsonl"
    body = '{"author": {"name": "Ada"}}\n' + bad + "\n"
    aws.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body.encode())

    answer = seed_api.post(
        "/seed-data/validate", user="user-1", body={"s3_key": key, "template_id": created.body["template_id"]}
    )

    assert answer.status == 400, answer.body
    assert answer.body["valid"] is False
    assert answer.body["error"].startswith("Malformed JSONL on line 2: ")
    assert reason in answer.body["error"]
    assert answer.body["errors"][-1]["line"] == 2
