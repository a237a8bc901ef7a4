"""Logs are structured JSON carrying the request's correlation id, and never seed content."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest

from functions.common import settings as s
from functions.common.observability import logger
from functions.seed_data.handler import lambda_handler as seed_handler
from functions.templates.handler import lambda_handler as templates_handler
from tests.support.http import ApiClient, LambdaContext, build_event

MARKER = "Zyxwvut-seed-secret"


@pytest.fixture
def logged() -> Iterator[io.StringIO]:
    """What the shared Powertools logger writes at INFO, exactly as it would reach CloudWatch."""
    buffer = io.StringIO()
    level = logger.log_level
    previous = logger.registered_handler.setStream(buffer)
    logger.setLevel("INFO")
    yield buffer
    logger.setLevel(level)
    logger.registered_handler.setStream(previous)


def test_validation_logs_are_json_with_the_correlation_id_and_no_seed_content(
    aws, logged: io.StringIO
) -> None:
    template = ApiClient(templates_handler).post(
        "/templates",
        body={"name": "t", "template_definition": {"steps": [{"id": "a", "prompt": "{{ author.name }}"}]}},
    )
    assert template.status == 201
    seed = (
        json.dumps({"author": {"name": MARKER}}) + "\n"
        + json.dumps({"author": {"bio": MARKER}}) + "\n"  # missing author.name
        + '{"author": {"name": "' + MARKER + '"\n'  # malformed
    )  # fmt: skip
    key = "seed-data/user-1/people.jsonl"
    aws.client("s3").put_object(Bucket=s.BucketSettings().bucket_name, Key=key, Body=seed.encode())
    logged.truncate(0)
    logged.seek(0)

    event = build_event(
        "POST", "/seed-data/validate", body={"s3_key": key, "template_id": template.body["template_id"]}
    )
    answer = seed_handler(event, LambdaContext())
    assert answer["statusCode"] == 400
    assert MARKER not in answer["body"]  # the answer names lines and fields, never values

    lines = [line for line in logged.getvalue().splitlines() if line.strip()]
    assert lines, "the handler logged nothing at INFO"
    for line in lines:
        record = json.loads(line)  # every line is one JSON object
        assert record["correlation_id"] == event["requestContext"]["requestId"]
        assert MARKER not in line
