"""The upload size limit holds on every path: a presigned PUT cannot bound the size it accepts, so
validation and job create read the object's size and refuse one larger than the limit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from functions.common.settings import load_settings
from functions.seed_data.handler import lambda_handler as seed_handler
from tests.integration.jobs.support import BUCKET, JOBS_TABLE, job_body, jobs_api, make_template
from tests.support.http import ApiClient

pytestmark = pytest.mark.integration

LIMIT = 64
seed_api = ApiClient(seed_handler)


@pytest.fixture
def small_limit(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("UPLOAD_MAX_BYTES", str(LIMIT))
    load_settings.cache_clear()
    yield
    load_settings.cache_clear()


def _put(aws: Any, size: int) -> str:
    line = b'{"author": {"name": "Ada"}}\n'
    key = f"seed-data/user-1/seed-{size}.jsonl"
    body = (line * (size // len(line) + 1))[:size]
    aws.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)
    return key


def test_the_upload_answer_states_the_limit(aws, small_limit) -> None:
    answer = seed_api.post("/seed-data/upload", body={"filename": "a.jsonl"})
    assert answer.body["max_bytes"] == LIMIT


def test_validating_an_object_over_the_limit_is_400(aws, small_limit) -> None:
    template_id = make_template(aws, "user-1")
    answer = seed_api.post(
        "/seed-data/validate", body={"s3_key": _put(aws, LIMIT + 1), "template_id": template_id}
    )
    assert answer.status == 400
    assert answer.body["error"] == f"The seed file is {LIMIT + 1} bytes; the upload limit is {LIMIT} bytes"
    within = seed_api.post("/seed-data/validate", body={"s3_key": _put(aws, 56), "template_id": template_id})
    assert within.status == 200, within.body


def test_a_job_on_an_object_over_the_limit_is_400_and_not_created(aws, small_limit) -> None:
    template_id = make_template(aws, "user-1")
    answer = jobs_api.post("/jobs", body=job_body(template_id, _put(aws, LIMIT + 1)))
    assert answer.status == 400
    assert answer.body == {"error": f"The seed file is {LIMIT + 1} bytes; the upload limit is {LIMIT} bytes"}
    assert aws.client("dynamodb").scan(TableName=JOBS_TABLE)["Count"] == 0
    assert jobs_api.post("/jobs", body=job_body(template_id, _put(aws, LIMIT))).status == 201
