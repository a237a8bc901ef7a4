"""The strict per-user job quotas on a real MiniStack 1.5.33, under real concurrency.

The moto tests (tests/integration/jobs/test_job_quotas.py) serialize moto's requests; here the
emulator serves 16 creates of one user from 8 threads at once, as DynamoDB would, through the
jobs service and repositories (the same code the handler runs). It checks what the design relies
on in the emulator the local runtime uses: ``size()`` of a string set in a transaction's condition,
set ADD in a transaction, and the conditional set DELETE that frees a place.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from functions.common import queued_jobs
from functions.common import settings as s
from functions.common.errors import DomainError, TooManyRequestsError
from functions.common.events import EventPublisher
from functions.jobs.models import CreateJobRequest, CreateJobResponse
from functions.jobs.repository import JobFiles, JobsRepository
from functions.jobs.service import JobQuota, JobsService, create_rate_limiter
from functions.templates.repository import TemplateRepository
from local.emulator import Emulator, start_emulator
from tests.integration.jobs.support import job_body, make_template, upload_seed
from tests.support.resources import create_resources

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

JOBS = s.JobsTableSettings().jobs_table
QUEUE = s.QueueTableSettings().queue_table
TEMPLATES = s.TemplatesTableSettings().templates_table
IDEMPOTENCY = s.IdempotencyTableSettings().idempotency_table
BUCKET = s.BucketSettings().bucket_name
BUS = s.EventBusSettings().event_bus_name
ATTEMPTS = 16


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emulator = start_emulator(shims=False)
    try:
        create_resources(emulator)
        yield emulator
    finally:
        emulator.stop()


def _request(emulator: Emulator, user: str) -> CreateJobRequest:
    """A valid create for ``user``: a template of theirs and an upload under their prefix."""
    template_id = make_template(emulator, user)
    return CreateJobRequest.model_validate(job_body(template_id, upload_seed(emulator, user)))


def _service(emulator: Emulator, *, max_queued: int, per_minute: int) -> JobsService:
    dynamodb = emulator.client("dynamodb")
    return JobsService(
        jobs=JobsRepository(dynamodb, JOBS, QUEUE, TEMPLATES),
        files=JobFiles(emulator.client("s3"), BUCKET),
        templates=TemplateRepository(dynamodb, TEMPLATES),
        publisher=EventPublisher(emulator.client("events"), BUS),
        quota=JobQuota(max_queued=max_queued),
        create_limiter=create_rate_limiter(dynamodb, IDEMPOTENCY, per_minute),
    )


def _race(service: JobsService, user: str, request: CreateJobRequest) -> list[Any]:
    def attempt(_: int) -> CreateJobResponse | DomainError:
        try:
            return service.create(user, request)
        except DomainError as error:
            return error

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(attempt, range(ATTEMPTS)))


def _jobs_of(emulator: Emulator, user: str) -> set[str]:
    items = emulator.client("dynamodb").scan(TableName=JOBS, ConsistentRead=True)["Items"]
    return {i["job_id"]["S"] for i in items if i["user_id"]["S"] == user}


def _queued_set(emulator: Emulator, user: str) -> set[str]:
    item = (
        emulator.client("dynamodb")
        .get_item(TableName=QUEUE, Key=queued_jobs.user_queued_key(user), ConsistentRead=True)
        .get("Item")
    )
    return set(item[queued_jobs.JOB_IDS]["SS"]) if item and queued_jobs.JOB_IDS in item else set()


def _split(outcomes: list[Any]) -> tuple[set[str], list[Any]]:
    created = {o.job_id for o in outcomes if isinstance(o, CreateJobResponse)}
    refused = [o for o in outcomes if not isinstance(o, CreateJobResponse)]
    assert all(isinstance(r, TooManyRequestsError) for r in refused), refused
    return created, refused


def test_concurrent_creates_never_pass_the_queued_quota(emulator: Emulator) -> None:
    user = f"queued-{uuid.uuid4()}"
    service = _service(emulator, max_queued=4, per_minute=1000)

    created, refused = _split(_race(service, user, _request(emulator, user)))

    # Exactly 4 (a create that kept conflicting would be a 429 "retry in a second" and fewer).
    assert len(created) == 4
    assert {r.message for r in refused} == {
        "You have 4 jobs waiting, the most allowed; try again when some have started"
    }
    assert all(r.headers == {"Retry-After": "60"} for r in refused)
    assert _jobs_of(emulator, user) == _queued_set(emulator, user) == created

    # A job that leaves QUEUED frees its place, once (the promoter's removal, replayed).
    gone = sorted(created)[0]
    assert queued_jobs.forget(emulator.client("dynamodb"), QUEUE, user, gone)
    assert not queued_jobs.forget(emulator.client("dynamodb"), QUEUE, user, gone)
    created_after, _ = _split(_race(service, user, _request(emulator, user)))
    assert len(created_after) == 1
    assert _queued_set(emulator, user) == (created - {gone}) | created_after


def test_concurrent_creates_never_pass_the_rate_quota(emulator: Emulator) -> None:
    # Far enough from a minute boundary that all 16 attempts fall in one window.
    if time.time() % 60 > 45:
        time.sleep(61 - time.time() % 60)
    user = f"rate-{uuid.uuid4()}"
    service = _service(emulator, max_queued=1000, per_minute=5)

    created, refused = _split(_race(service, user, _request(emulator, user)))

    assert len(created) == 5
    assert all(r.message.startswith("Rate limit reached: 5 per minute") for r in refused)
    assert _jobs_of(emulator, user) == _queued_set(emulator, user) == created
