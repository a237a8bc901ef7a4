"""Per-user quotas on POST /jobs, strict: waiting jobs and creates a minute answer 429 with
Retry-After, a refused create writes nothing, and concurrent creates never pass a quota together.

The quotas come from the environment (``MAX_QUEUED_JOBS_PER_USER``, ``MAX_JOBS_CREATED_PER_MINUTE``)
as the CDK app sets them; for the rate window, the limiter's clock is injected so the window is exact.
The concurrent tests run real threads against moto with each request made atomic (as each DynamoDB
request is; see ``atomic_requests``): the conditions decide, not the timing.
How a job leaves the QUEUED set (the Jobs stream, the reconciler) is tested in
tests/integration/streams/test_queued_quota.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from functions.common.errors import DomainError, TooManyRequestsError
from functions.common.events import EventPublisher
from functions.common.queued_jobs import JOB_IDS, forget, user_queued_key
from functions.common.settings import load_settings
from functions.jobs.models import CreateJobRequest, CreateJobResponse
from functions.jobs.repository import JobFiles, JobsRepository
from functions.jobs.service import CREATE_RATE_SCOPE, JobQuota, JobsService, create_rate_limiter
from functions.templates.repository import TemplateRepository
from tests.integration.jobs.support import (
    BUCKET,
    IDEMPOTENCY_TABLE,
    JOBS_TABLE,
    QUEUE_TABLE,
    TEMPLATES_TABLE,
    job_body,
    jobs_api,
    make_template,
    set_status,
    upload_seed,
)
from tests.integration.streams.support import atomic_requests
from tests.support.conflicts import ConflictsFirst

pytestmark = pytest.mark.integration

# 2026-11-30T12:00:00Z, the start of a minute window.
MINUTE_START = 1_796_040_000.0
assert MINUTE_START % 60 == 0


@pytest.fixture
def quotas(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("MAX_QUEUED_JOBS_PER_USER", "3")
    monkeypatch.setenv("MAX_JOBS_CREATED_PER_MINUTE", "5")
    load_settings.cache_clear()
    yield
    load_settings.cache_clear()


def _post(user: str, template_id: str, seed_key: str, **headers: str) -> Any:
    return jobs_api.post("/jobs", user=user, body=job_body(template_id, seed_key), headers=headers)


def _scan(aws: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = aws.session.resource("dynamodb").Table(table).scan()["Items"]
    return items


def _jobs_of(aws: Any, user: str) -> set[str]:
    return {i["job_id"] for i in _scan(aws, JOBS_TABLE) if i["user_id"] == user}


def _queue_entries_of(aws: Any, user: str) -> set[str]:
    return {i["job_id"] for i in _scan(aws, QUEUE_TABLE) if i["status"] == "QUEUED" and i["user_id"] == user}


def _queued_set(aws: Any, user: str) -> set[str]:
    item = aws.client("dynamodb").get_item(TableName=QUEUE_TABLE, Key=user_queued_key(user)).get("Item")
    return set(item[JOB_IDS]["SS"]) if item and JOB_IDS in item else set()


def _create_counts(aws: Any, user: str) -> list[int]:
    """The user's create rate counters (one per minute window used)."""
    prefix = f"rate-limit#{CREATE_RATE_SCOPE}#{user}#"
    return [int(i["request_count"]) for i in _scan(aws, IDEMPOTENCY_TABLE) if i["id"].startswith(prefix)]


def test_the_queued_quota_answers_429_with_retry_after_and_writes_nothing(aws: Any, quotas: None) -> None:
    template_id, seed_key = make_template(aws, "user-1"), upload_seed(aws, "user-1")
    created = [_post("user-1", template_id, seed_key) for _ in range(3)]
    assert [a.status for a in created] == [201, 201, 201]
    aws.capture.drain()

    refused = _post("user-1", template_id, seed_key)

    assert refused.status == 429
    assert refused.headers["Retry-After"] == "60"
    assert refused.body == {
        "error": "You have 3 jobs waiting, the most allowed; try again when some have started"
    }
    assert aws.capture.drain() == []  # no Job Queued
    ids = {a.body["job_id"] for a in created}
    assert _jobs_of(aws, "user-1") == _queue_entries_of(aws, "user-1") == _queued_set(aws, "user-1") == ids
    assert _create_counts(aws, "user-1") == [3]  # the refused create counted in no window either
    head = (
        aws.session.resource("dynamodb")
        .Table(TEMPLATES_TABLE)
        .get_item(Key={"template_id": template_id, "version": 0})["Item"]
    )
    assert head["job_refs"] == 3

    # Another user has a quota of their own.
    other = _post("user-2", make_template(aws, "user-2"), upload_seed(aws, "user-2"))
    assert other.status == 201
    assert _queued_set(aws, "user-2") == {other.body["job_id"]}

    # A refused create does not burn its Idempotency-Key: once a job started (and the promoter took
    # it out of the set, as the Jobs stream has it do), the same key creates the job.
    keyed = _post("user-1", template_id, seed_key, **{"Idempotency-Key": "after-429"})
    assert keyed.status == 429
    started = created[0].body["job_id"]
    set_status(aws, started, "RUNNING")
    assert forget(aws.client("dynamodb"), QUEUE_TABLE, "user-1", started)
    retried = _post("user-1", template_id, seed_key, **{"Idempotency-Key": "after-429"})
    assert retried.status == 201
    assert _queued_set(aws, "user-1") == ids - {started} | {retried.body["job_id"]}


def test_invalid_requests_use_up_no_quota_and_a_replay_is_answered_before_it(aws: Any, quotas: None) -> None:
    template_id, seed_key = make_template(aws, "user-1"), upload_seed(aws, "user-1")
    # 404 (no such template), 403 (another user's seed), 404 (no such seed): validation comes first.
    for body in (
        job_body("no-such-template", seed_key),
        job_body(template_id, "seed-data/user-2/authors.jsonl"),
        job_body(template_id, "seed-data/user-1/missing.jsonl"),
    ):
        assert jobs_api.post("/jobs", user="user-1", body=body).status in (403, 404)
    assert _create_counts(aws, "user-1") == []
    assert _queued_set(aws, "user-1") == set()

    first = _post("user-1", template_id, seed_key, **{"Idempotency-Key": "first"})
    assert [_post("user-1", template_id, seed_key).status for _ in range(2)] == [201, 201]
    assert _post("user-1", template_id, seed_key).status == 429  # 3 waiting

    replay = _post("user-1", template_id, seed_key, **{"Idempotency-Key": "first"})

    assert replay.status == 201
    assert replay.body == first.body
    assert _create_counts(aws, "user-1") == [3]


def _service(aws: Any, *, max_queued: int, per_minute: int, now: list[float]) -> JobsService:
    dynamodb = aws.client("dynamodb")
    # The window's clock, fixed for exact assertions.
    limiter = create_rate_limiter(dynamodb, IDEMPOTENCY_TABLE, per_minute, clock=lambda: now[0])
    return JobsService(
        jobs=JobsRepository(dynamodb, JOBS_TABLE, QUEUE_TABLE, TEMPLATES_TABLE),
        files=JobFiles(aws.client("s3"), BUCKET),
        templates=TemplateRepository(dynamodb, TEMPLATES_TABLE),
        publisher=EventPublisher(aws.client("events"), "plot-palette"),
        quota=JobQuota(max_queued=max_queued),
        create_limiter=limiter,
    )


def test_the_rate_quota_is_a_fixed_minute_window_and_says_when_it_ends(aws: Any) -> None:
    request = CreateJobRequest.model_validate(
        job_body(make_template(aws, "user-1"), upload_seed(aws, "user-1"))
    )
    now = [MINUTE_START]
    service = _service(aws, max_queued=100, per_minute=3, now=now)
    for offset in (0, 10, 20):  # three creates at 12:00:00, :10 and :20
        now[0] = MINUTE_START + offset
        service.create("user-1", request)

    now[0] = MINUTE_START + 45.5
    with pytest.raises(TooManyRequestsError) as refused:
        service.create("user-1", request)
    # The window 12:00:00-12:01:00 ends 14.5 s later (rounded up).
    assert refused.value.retry_after_seconds == 15
    assert refused.value.message == "Rate limit reached: 3 per minute; retry in 15 s"
    assert len(_jobs_of(aws, "user-1")) == 3
    assert len(_queued_set(aws, "user-1")) == 3  # the refused create is in no set

    now[0] = MINUTE_START + 60  # a new window
    job = service.create("user-1", request)
    assert job.job_id in _jobs_of(aws, "user-1")
    assert sorted(_create_counts(aws, "user-1")) == [1, 3]


def _race(service: JobsService, request: CreateJobRequest, attempts: int) -> list[Any]:
    """``attempts`` creates of one user at once (6 threads), each answer or 4xx error."""

    def attempt(_: int) -> CreateJobResponse | DomainError:
        try:
            return service.create("user-1", request)
        except DomainError as error:
            return error

    with atomic_requests(), ThreadPoolExecutor(max_workers=6) as pool:
        return list(pool.map(attempt, range(attempts)))


def _assert_admitted_exactly(aws: Any, outcomes: list[Any], admitted: int, message: str) -> None:
    created = [o for o in outcomes if isinstance(o, CreateJobResponse)]
    refused = [o for o in outcomes if not isinstance(o, CreateJobResponse)]
    assert len(created) == admitted
    assert all(isinstance(r, TooManyRequestsError) and r.headers["Retry-After"] for r in refused)
    assert {r.message for r in refused} == {message}
    # Refused creates wrote nothing: exactly the admitted jobs exist, are queued and counted.
    ids = {c.job_id for c in created}
    assert _jobs_of(aws, "user-1") == _queue_entries_of(aws, "user-1") == _queued_set(aws, "user-1") == ids
    assert len(aws.capture.drain()) == admitted  # one Job Queued each


def test_concurrent_creates_never_pass_the_queued_quota(aws: Any) -> None:
    request = CreateJobRequest.model_validate(
        job_body(make_template(aws, "user-1"), upload_seed(aws, "user-1"))
    )
    service = _service(aws, max_queued=4, per_minute=100, now=[MINUTE_START])

    outcomes = _race(service, request, 16)

    _assert_admitted_exactly(
        aws, outcomes, 4, "You have 4 jobs waiting, the most allowed; try again when some have started"
    )
    assert _create_counts(aws, "user-1") == [4]


def test_concurrent_creates_never_pass_the_rate_quota(aws: Any) -> None:
    request = CreateJobRequest.model_validate(
        job_body(make_template(aws, "user-1"), upload_seed(aws, "user-1"))
    )
    service = _service(aws, max_queued=100, per_minute=5, now=[MINUTE_START + 30])

    outcomes = _race(service, request, 16)

    _assert_admitted_exactly(aws, outcomes, 5, "Rate limit reached: 5 per minute; retry in 30 s")
    assert _create_counts(aws, "user-1") == [5]


def test_creates_that_keep_conflicting_answer_429_retry_after_1_and_write_nothing(aws: Any) -> None:
    """Many concurrent creates of one user contend on their QUEUED set and counters; when the
    retries are spent the client is told to retry shortly (never a 500)."""
    request = CreateJobRequest.model_validate(
        job_body(make_template(aws, "user-1"), upload_seed(aws, "user-1"))
    )
    dynamodb = ConflictsFirst(aws.client("dynamodb"), conflicts=100, at=3)
    service = JobsService(
        jobs=JobsRepository(dynamodb, JOBS_TABLE, QUEUE_TABLE, TEMPLATES_TABLE),
        files=JobFiles(aws.client("s3"), BUCKET),
        templates=TemplateRepository(aws.client("dynamodb"), TEMPLATES_TABLE),
        publisher=EventPublisher(aws.client("events"), "plot-palette"),
        create_limiter=create_rate_limiter(dynamodb, IDEMPOTENCY_TABLE, 60),
    )

    with pytest.raises(TooManyRequestsError) as refused:
        service.create("user-1", request)

    assert refused.value.headers == {"Retry-After": "1"}
    assert dynamodb.calls == 5
    assert _jobs_of(aws, "user-1") == _queued_set(aws, "user-1") == set()
    assert _create_counts(aws, "user-1") == []
