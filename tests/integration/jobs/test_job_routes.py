"""GET /jobs/{id}, DELETE /jobs/{id}, GET /jobs/{id}/download: success, conflicts, ownership, auth."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from functions.common.errors import ConflictError
from functions.common.events import EventPublisher, JobCancellationRequested, JobDeletionRequested
from functions.jobs.models import JobRecord
from functions.jobs.repository import JobFiles, JobsRepository
from functions.jobs.service import JobsService
from functions.templates.repository import TemplateRepository
from tests.integration.jobs.support import (
    BUCKET,
    JOBS_TABLE,
    QUEUE_TABLE,
    TEMPLATES_TABLE,
    create_job,
    get_job_item,
    jobs_api,
    set_status,
)

pytestmark = pytest.mark.integration

TERMINAL = ["COMPLETED", "FAILED", "BUDGET_EXCEEDED", "CANCELLED"]
MISSING_ID = "00000000-0000-4000-8000-000000000000"


# ------------------------------------------------------------------ GET /jobs/{job_id}


def test_get_returns_the_whole_job_without_the_task_token(aws: Any) -> None:
    job_id = create_job(
        aws, priority=9, task_size="small", export_config={"compression": "gzip", "include_prompts": False}
    )
    set_status(aws, job_id, "RUNNING", started_at="2026-11-28T15:00:00.000Z", task_token="SECRET-TOKEN")

    answer = jobs_api.get(f"/jobs/{job_id}")

    assert answer.status == 200
    body = answer.body
    assert "SECRET-TOKEN" not in str(body)
    assert "task_token" not in body
    assert "user_status" not in body
    assert "queue_key" not in body
    item = get_job_item(aws, job_id)
    assert item is not None
    assert body["job_id"] == job_id
    assert body["user_id"] == "user-1"
    assert body["status"] == "RUNNING"
    assert body["template_id"] == item["template_id"]
    assert body["template_version"] == 1
    assert body["seed_data_path"] == "seed-data/user-1/authors.jsonl"
    assert body["budget_limit"] == 25.5
    assert '"budget_limit":25.50' in answer.text  # the stored Decimal's digits, as a JSON number
    assert body["output_format"] == "JSONL"
    assert body["num_records"] == 100
    assert body["priority"] == 9
    assert body["task_size"] == "small"
    assert body["partition_strategy"] == "none"
    assert body["export_config"] == {"compression": "gzip", "include_prompts": False}
    assert body["started_at"] == "2026-11-28T15:00:00.000Z"
    assert body["cost"] == {"bedrock": 0, "fargate": 0, "s3": 0, "total": 0}
    assert body["config"] == {
        "template_id": item["template_id"],
        "template_version": 1,
        "seed_data_path": "seed-data/user-1/authors.jsonl",
        "budget_limit": 25.5,
        "output_format": "JSONL",
        "num_records": 100,
        "task_size": "small",
        "partition_strategy": "none",
        "export_config": {"compression": "gzip", "include_prompts": False},
        "priority": 9,
    }
    assert body["records_generated"] == 0
    assert body["tokens_used"] == 0
    assert body["budget_exceeded"] is False


@pytest.mark.parametrize("job_id", [MISSING_ID, "not-a-uuid", "x" * 5000])
def test_get_missing_is_404(aws: Any, job_id: str) -> None:
    answer = jobs_api.get(f"/jobs/{job_id}")
    assert answer.status == 404
    assert answer.body == {"error": "Job not found"}


# ------------------------------------------------------------------ another user's job, every route

OTHER_USER_ROUTES = [
    ("GET", "/jobs/{id}"),
    ("DELETE", "/jobs/{id}"),
    ("POST", "/jobs/{id}/cancel"),
    ("GET", "/jobs/{id}/download"),
]


@pytest.mark.parametrize(("method", "path"), OTHER_USER_ROUTES)
@pytest.mark.parametrize("status", ["QUEUED", "COMPLETED"])
def test_another_users_job_is_403_without_data_and_untouched(
    aws: Any, method: str, path: str, status: str
) -> None:
    job_id = create_job(aws, user="user-1")
    if status != "QUEUED":
        set_status(aws, job_id, status)
    before = get_job_item(aws, job_id)
    aws.capture.drain()

    answer = jobs_api.request(method, path.format(id=job_id), user="user-2")

    assert answer.status == 403
    assert answer.body == {"error": "Forbidden"}
    assert get_job_item(aws, job_id) == before
    assert aws.capture.drain() == []


@pytest.mark.parametrize(("method", "path"), [*OTHER_USER_ROUTES, ("GET", "/jobs"), ("POST", "/jobs")])
def test_every_route_without_claims_is_401(aws: Any, method: str, path: str) -> None:
    job_id = create_job(aws)
    aws.capture.drain()
    body = {
        "template_id": "t",
        "seed_data_path": "seed-data/x/y",
        "budget_limit": 1,
        "output_format": "CSV",
        "num_records": 1,
    }
    answer = jobs_api.request(method, path.format(id=job_id), user=None, body=body)
    assert answer.status == 401
    assert answer.body == {"error": "Unauthorized"}
    assert aws.capture.drain() == []


# ------------------------------------------------------------------ DELETE /jobs/{job_id}


@pytest.mark.parametrize("status", ["QUEUED", "RUNNING"])
def test_delete_of_an_active_job_requests_cancellation(aws: Any, status: str) -> None:
    job_id = create_job(aws)
    if status != "QUEUED":
        set_status(aws, job_id, status)
    aws.capture.drain()

    answer = jobs_api.delete(f"/jobs/{job_id}")

    assert answer.status == 202
    assert answer.body == {"message": "Cancellation requested", "job_id": job_id}
    item = get_job_item(aws, job_id)
    assert item is not None
    assert item["status"] == status  # the state machine, not the API, ends it
    requested_at = item["cancel_requested_at"]
    assert item["updated_at"] == requested_at
    events = aws.capture.drain()
    assert [(e["source"], e["detail-type"]) for e in events] == [
        ("plot-palette.jobs", "Job Cancellation Requested")
    ]
    assert JobCancellationRequested.model_validate(events[0]["detail"]) == JobCancellationRequested(
        job_id=job_id, user_id="user-1", requested_at=requested_at, status=status
    )


def test_a_second_cancel_is_202_keeps_the_first_time_and_re_emits(aws: Any) -> None:
    job_id = create_job(aws)
    first = jobs_api.delete(f"/jobs/{job_id}")
    item = get_job_item(aws, job_id)
    assert item is not None
    aws.capture.drain()

    second = jobs_api.delete(f"/jobs/{job_id}")

    assert first.status == second.status == 202
    assert second.body == {"message": "Cancellation requested", "job_id": job_id}
    assert get_job_item(aws, job_id) == item  # nothing rewritten
    events = aws.capture.drain()
    assert len(events) == 1
    assert events[0]["detail"]["requested_at"] == item["cancel_requested_at"]


@pytest.mark.parametrize("status", TERMINAL)
def test_delete_of_a_terminal_job_requests_deletion(aws: Any, status: str) -> None:
    job_id = create_job(aws)
    set_status(aws, job_id, status)
    before = get_job_item(aws, job_id)
    aws.capture.drain()

    answer = jobs_api.delete(f"/jobs/{job_id}")

    assert answer.status == 202
    assert answer.body == {"message": "Deletion requested", "job_id": job_id}
    assert get_job_item(aws, job_id) == before  # the cleanup state machine deletes, not the API
    events = aws.capture.drain()
    assert [e["detail-type"] for e in events] == ["Job Deletion Requested"]
    detail = JobDeletionRequested.model_validate(events[0]["detail"])
    assert (detail.job_id, detail.user_id, detail.status) == (job_id, "user-1", status)


def test_delete_missing_is_404(aws: Any) -> None:
    answer = jobs_api.delete(f"/jobs/{MISSING_ID}")
    assert answer.status == 404
    assert aws.capture.drain() == []


def test_job_finishing_between_read_and_cancel_is_409_and_not_a_deletion(aws: Any) -> None:
    """The conditional write decides: a RUNNING snapshot that COMPLETED meanwhile is not cancelled."""
    job_id = create_job(aws)
    set_status(aws, job_id, "RUNNING")
    dynamodb = aws.client("dynamodb")
    real = JobsRepository(dynamodb, JOBS_TABLE, QUEUE_TABLE, TEMPLATES_TABLE)
    snapshot = real.get(job_id)
    assert snapshot is not None

    class ReadBeforeCompletion(JobsRepository):
        def get(self, job_id: str) -> JobRecord | None:
            return snapshot  # what a read just before the lifecycle's terminal write saw

    service = JobsService(
        jobs=ReadBeforeCompletion(dynamodb, JOBS_TABLE, QUEUE_TABLE, TEMPLATES_TABLE),
        files=JobFiles(aws.client("s3"), BUCKET),
        templates=TemplateRepository(dynamodb, TEMPLATES_TABLE),
        publisher=EventPublisher(aws.client("events"), "plot-palette"),
    )
    set_status(aws, job_id, "COMPLETED")
    aws.capture.drain()

    with pytest.raises(ConflictError):
        service.delete("user-1", job_id)
    item = get_job_item(aws, job_id)
    assert item is not None
    assert "cancel_requested_at" not in item
    assert aws.capture.drain() == []


# ------------------------------------------------------------------ POST /jobs/{job_id}/cancel


@pytest.mark.parametrize("status", ["QUEUED", "RUNNING"])
def test_cancel_of_an_active_job_requests_cancellation(aws: Any, status: str) -> None:
    job_id = create_job(aws)
    if status != "QUEUED":
        set_status(aws, job_id, status)
    aws.capture.drain()

    answer = jobs_api.post(f"/jobs/{job_id}/cancel", body=None)

    assert answer.status == 202
    assert answer.body == {"message": "Cancellation requested", "job_id": job_id}
    item = get_job_item(aws, job_id)
    assert item is not None
    assert item["status"] == status
    events = aws.capture.drain()
    assert [e["detail-type"] for e in events] == ["Job Cancellation Requested"]
    assert events[0]["detail"]["requested_at"] == item["cancel_requested_at"]


@pytest.mark.parametrize("status", TERMINAL)
def test_cancel_of_a_finished_job_is_409_naming_its_status_and_deletes_nothing(aws: Any, status: str) -> None:
    job_id = create_job(aws)
    set_status(aws, job_id, status)
    before = get_job_item(aws, job_id)
    aws.capture.drain()

    answer = jobs_api.post(f"/jobs/{job_id}/cancel", body=None)

    assert answer.status == 409
    assert answer.body == {"error": f"The job already finished ({status}); nothing to cancel"}
    assert get_job_item(aws, job_id) == before
    assert aws.capture.drain() == []  # neither a cancellation nor a deletion request


def test_cancel_racing_completion_is_409_and_never_a_deletion(aws: Any) -> None:
    """A RUNNING snapshot that COMPLETED before the conditional write: 409, no event, job kept."""
    job_id = create_job(aws)
    set_status(aws, job_id, "RUNNING")
    dynamodb = aws.client("dynamodb")
    snapshot = JobsRepository(dynamodb, JOBS_TABLE, QUEUE_TABLE, TEMPLATES_TABLE).get(job_id)
    assert snapshot is not None

    class ReadBeforeCompletion(JobsRepository):
        def get(self, job_id: str) -> JobRecord | None:
            return snapshot

    service = JobsService(
        jobs=ReadBeforeCompletion(dynamodb, JOBS_TABLE, QUEUE_TABLE, TEMPLATES_TABLE),
        files=JobFiles(aws.client("s3"), BUCKET),
        templates=TemplateRepository(dynamodb, TEMPLATES_TABLE),
        publisher=EventPublisher(aws.client("events"), "plot-palette"),
    )
    set_status(aws, job_id, "COMPLETED")
    aws.capture.drain()

    with pytest.raises(ConflictError, match=r"finished \(COMPLETED\) before it could be cancelled$"):
        service.cancel("user-1", job_id)
    item = get_job_item(aws, job_id)
    assert item is not None
    assert item["status"] == "COMPLETED"
    assert "cancel_requested_at" not in item
    assert aws.capture.drain() == []


def test_cancel_missing_is_404(aws: Any) -> None:
    answer = jobs_api.post(f"/jobs/{MISSING_ID}/cancel", body=None)
    assert answer.status == 404
    assert aws.capture.drain() == []


# ------------------------------------------------------------------ GET /jobs/{job_id}/download


@pytest.mark.parametrize(("fmt", "ext"), [("JSONL", "jsonl"), ("CSV", "csv"), ("PARQUET", "parquet")])
def test_download_of_a_completed_job_is_a_one_hour_presigned_get(aws: Any, fmt: str, ext: str) -> None:
    job_id = create_job(aws, output_format=fmt)
    set_status(aws, job_id, "COMPLETED", completed_at="2026-11-28T16:00:00.000Z")
    key = f"jobs/{job_id}/exports/dataset.{ext}"
    aws.client("s3").put_object(Bucket=BUCKET, Key=key, Body=b"exported-bytes")

    answer = jobs_api.get(f"/jobs/{job_id}/download")

    assert answer.status == 200
    assert answer.body["job_id"] == job_id
    assert answer.body["s3_key"] == key
    assert answer.body["output_format"] == fmt
    assert answer.body["expires_in"] == 3600
    url = urlparse(answer.body["download_url"])
    assert url.path.endswith(f"/{key}")
    query = parse_qs(url.query)
    assert query["X-Amz-Expires"] == ["3600"]
    assert "X-Amz-Signature" in query
    assert query["response-content-disposition"] == [f'attachment; filename="{job_id}.{ext}"']
    assert (answer.body["partial"], answer.body["records"]) == (False, 0)
    assert answer.body["files"] == [{"s3_key": key, "download_url": answer.body["download_url"]}]
    # moto serves presigned URLs in-process: the link really fetches the export.
    fetched = requests.get(answer.body["download_url"], timeout=10)
    assert fetched.status_code == 200
    assert fetched.content == b"exported-bytes"


def test_download_lists_every_numbered_file_in_order_with_a_link_each(aws: Any) -> None:
    job_id = create_job(aws, partition_strategy="records:2", export_config={"compression": "gzip"})
    keys = [f"jobs/{job_id}/exports/dataset-{n:05d}.jsonl.gz" for n in (1, 2, 3)]
    for key in reversed(keys):
        aws.client("s3").put_object(Bucket=BUCKET, Key=key, Body=key.encode())
    set_status(
        aws,
        job_id,
        "COMPLETED",
        records_generated=5,
        result={"records": 5, "output_key": keys[0], "files": 3},
    )

    answer = jobs_api.get(f"/jobs/{job_id}/download")

    assert answer.status == 200
    assert [f["s3_key"] for f in answer.body["files"]] == keys
    assert (answer.body["s3_key"], answer.body["records"], answer.body["partial"]) == (keys[0], 5, False)
    for key, file in zip(keys, answer.body["files"], strict=True):
        query = parse_qs(urlparse(file["download_url"]).query)
        assert query["response-content-disposition"] == [
            f'attachment; filename="{job_id}{key.rsplit("/", 1)[-1].removeprefix("dataset")}"'
        ]
        assert requests.get(file["download_url"], timeout=10).content == key.encode()


@pytest.mark.parametrize("status", ["FAILED", "BUDGET_EXCEEDED", "CANCELLED"])
def test_download_of_a_stopped_job_with_a_partial_export_says_partial_and_counts(
    aws: Any, status: str
) -> None:
    job_id = create_job(aws)
    key = f"jobs/{job_id}/exports/dataset.jsonl"
    aws.client("s3").put_object(Bucket=BUCKET, Key=key, Body=b'{"id": 1}\n{"id": 2}\n')
    set_status(
        aws,
        job_id,
        status,
        records_generated=2,
        result={"records": 2, "output_key": key, "files": 1, "partial": True},
    )

    answer = jobs_api.get(f"/jobs/{job_id}/download")

    assert answer.status == 200
    assert (answer.body["partial"], answer.body["records"], answer.body["s3_key"]) == (True, 2, key)
    assert jobs_api.get(f"/jobs/{job_id}").body["records_generated"] == 2


@pytest.mark.parametrize("status", ["QUEUED", "RUNNING", "FAILED", "BUDGET_EXCEEDED", "CANCELLED"])
def test_download_of_a_job_that_is_not_completed_is_409(aws: Any, status: str) -> None:
    job_id = create_job(aws)
    if status != "QUEUED":
        set_status(aws, job_id, status)
    answer = jobs_api.get(f"/jobs/{job_id}/download")
    assert answer.status == 409
    assert status in answer.body["error"]
    assert "download_url" not in answer.body


def test_download_when_the_export_is_missing_is_404(aws: Any) -> None:
    job_id = create_job(aws)
    set_status(aws, job_id, "COMPLETED")
    answer = jobs_api.get(f"/jobs/{job_id}/download")
    assert answer.status == 404
    assert answer.body == {"error": "Export not found"}


def test_download_of_a_missing_job_is_404(aws: Any) -> None:
    answer = jobs_api.get(f"/jobs/{MISSING_ID}/download")
    assert answer.status == 404
    assert answer.body == {"error": "Job not found"}


def test_money_is_an_exact_json_number_in_every_answer(aws: Any) -> None:
    job_id = create_job(aws, budget_limit="0.1")
    aws.session.resource("dynamodb").Table(JOBS_TABLE).update_item(
        Key={"job_id": job_id},
        UpdateExpression="SET #c.#t = :t, #c.#b = :b",
        ExpressionAttributeNames={"#c": "cost", "#t": "total", "#b": "bedrock"},
        ExpressionAttributeValues={":t": Decimal("0.30000000000000004"), ":b": Decimal("4.61E-7")},
    )
    detail = jobs_api.get(f"/jobs/{job_id}")
    summary = jobs_api.get("/jobs")
    # The bytes: the Decimal's digits, never a float's 4.61e-07 nor a string.
    assert '"bedrock":0.000000461,' in detail.text
    assert '"total":0.30000000000000004}' in detail.text
    assert '"budget_limit":0.1,' in detail.text
    assert '"cost_estimate":0.30000000000000004,' in summary.text
    assert '"budget_limit":0.1' in summary.text
    parsed = json.loads(detail.text, parse_float=Decimal)
    assert parsed["cost"]["bedrock"] == Decimal("0.000000461")
    assert parsed["config"]["budget_limit"] == Decimal("0.1")
