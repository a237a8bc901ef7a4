"""Per-user quotas on POST /jobs: waiting jobs and creates a minute answer 429 with Retry-After.

The quotas come from the environment (``MAX_QUEUED_JOBS_PER_USER``, ``MAX_JOBS_CREATED_PER_MINUTE``)
as the CDK app sets them; the clock is the service's, injected, so the window is exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from functions.common.clock import parse_iso, to_iso
from functions.common.errors import TooManyRequestsError
from functions.common.events import EventPublisher
from functions.common.settings import load_settings
from functions.jobs.models import CreateJobRequest
from functions.jobs.repository import JobFiles, JobsRepository
from functions.jobs.service import JobQuota, JobsService
from functions.templates.repository import TemplateRepository
from tests.integration.jobs.support import (
    BUCKET,
    JOBS_TABLE,
    QUEUE_TABLE,
    TEMPLATES_TABLE,
    get_job_item,
    job_body,
    jobs_api,
    make_template,
    set_status,
    upload_seed,
)

pytestmark = pytest.mark.integration

START = "2026-11-30T12:00:00.000Z"


@pytest.fixture
def quotas(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("MAX_QUEUED_JOBS_PER_USER", "3")
    monkeypatch.setenv("MAX_JOBS_CREATED_PER_MINUTE", "5")
    load_settings.cache_clear()
    yield
    load_settings.cache_clear()


def _post(aws: Any, user: str, template_id: str, seed_key: str) -> Any:
    return jobs_api.post("/jobs", user=user, body=job_body(template_id, seed_key))


def test_the_queued_quota_answers_429_with_retry_after_and_writes_nothing(aws: Any, quotas: None) -> None:
    template_id, seed_key = make_template(aws, "user-1"), upload_seed(aws, "user-1")
    created = [_post(aws, "user-1", template_id, seed_key) for _ in range(3)]
    assert [a.status for a in created] == [201, 201, 201]
    aws.capture.drain()

    refused = _post(aws, "user-1", template_id, seed_key)

    assert refused.status == 429
    assert refused.headers["Retry-After"] == "60"
    assert refused.body == {
        "error": "You have 3 jobs waiting, the most allowed; try again when some have started"
    }
    assert aws.capture.drain() == []  # no Job Queued
    listed = jobs_api.get("/jobs", user="user-1", query={"limit": 100})
    assert len(listed.body["jobs"]) == 3

    # Another user has a quota of their own; a started job frees a place in the first user's.
    other = _post(aws, "user-2", make_template(aws, "user-2"), upload_seed(aws, "user-2"))
    assert other.status == 201
    set_status(aws, created[0].body["job_id"], "RUNNING")
    assert _post(aws, "user-1", template_id, seed_key).status == 201


def _service(aws: Any, clock: list[str]) -> JobsService:
    dynamodb = aws.client("dynamodb")
    return JobsService(
        jobs=JobsRepository(dynamodb, JOBS_TABLE, QUEUE_TABLE, TEMPLATES_TABLE),
        files=JobFiles(aws.client("s3"), BUCKET),
        templates=TemplateRepository(dynamodb, TEMPLATES_TABLE),
        publisher=EventPublisher(aws.client("events"), "plot-palette"),
        clock=lambda: clock[0],
        quota=JobQuota(max_queued=100, max_per_minute=3),
    )


def test_the_rate_quota_counts_the_last_minute_and_says_when_a_place_frees(aws: Any) -> None:
    template_id, seed_key = make_template(aws, "user-1"), upload_seed(aws, "user-1")
    request = CreateJobRequest.model_validate(job_body(template_id, seed_key))
    clock = [START]
    service = _service(aws, clock)
    for offset in (0, 10, 20):  # three creates at 12:00:00, :10 and :20
        clock[0] = to_iso(parse_iso(START) + timedelta(seconds=offset))
        service.create("user-1", request)

    clock[0] = to_iso(parse_iso(START) + timedelta(seconds=45))
    with pytest.raises(TooManyRequestsError) as refused:
        service.create("user-1", request)
    # The 12:00:00 create leaves the window at 12:01:00, 15 s later (rounded up).
    assert refused.value.retry_after_seconds == 16
    assert refused.value.message == "At most 3 jobs a minute; try again shortly"

    clock[0] = to_iso(parse_iso(START) + timedelta(seconds=61))
    job = service.create("user-1", request)  # the first create has left the window
    assert get_job_item(aws, job.job_id) is not None
