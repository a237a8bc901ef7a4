"""The error mapping every API Lambda shares (functions.common.api), seen through a real handler."""

import json

import pytest

from functions.jobs.handler import lambda_handler as jobs_handler
from tests.support.http import ApiClient

BODY = {"template_id": "t", "seed_data_path": "seed-data/user-1/a.jsonl", "budget_limit": "5",
        "output_format": "JSONL", "num_records": 1}  # fmt: skip


# Powertools warns that a multipart body should arrive base64-encoded; that is beside the point here.
@pytest.mark.filterwarnings("ignore:Received multipart/form-data without base64 encoding:UserWarning")
@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"]
)
def test_a_body_that_is_not_json_is_415_and_creates_nothing(aws, content_type: str) -> None:
    answer = ApiClient(jobs_handler).post(
        "/jobs", raw_body=json.dumps(BODY), headers={"Content-Type": content_type}
    )
    assert answer.status == 415
    assert answer.body == {"error": "Unsupported content type: send JSON with Content-Type: application/json"}
    jobs = aws.client("dynamodb").scan(TableName="plot-palette-Jobs")
    assert jobs["Count"] == 0


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain"])
def test_anonymous_non_json_post_is_still_401(aws, content_type: str) -> None:
    answer = ApiClient(jobs_handler).post(
        "/jobs", user=None, raw_body="a=b", headers={"Content-Type": content_type}
    )
    assert answer.status == 401


def test_malformed_json_is_400_naming_the_problem(aws) -> None:
    answer = ApiClient(jobs_handler).post("/jobs", raw_body='{"template_id": ')
    assert answer.status == 400
    assert answer.body["error"] == "Request validation failed"
    assert answer.body["details"][0]["type"] == "json_invalid"
