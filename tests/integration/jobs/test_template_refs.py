"""POST /jobs counts the job on its template's head item (``job_refs``, docs/data-model.md), in the
same transaction as the job: a created job adds exactly 1, a refused or failed create adds nothing,
and a template whose head is gone (being deleted) refuses new jobs with a 404."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from functions.common.clock import now_iso
from functions.jobs.repository import JobIdTakenError, JobsRepository, TemplateVersionGoneError, queue_key
from tests.integration.jobs.support import (
    JOBS_TABLE,
    QUEUE_TABLE,
    TEMPLATES_TABLE,
    job_body,
    jobs_api,
    make_template,
    upload_seed,
)
from tests.support.conflicts import ConflictsFirst

pytestmark = pytest.mark.integration


def job_refs(aws: Any, template_id: str) -> int | None:
    """The head's counter; None when the head is gone. An absent counter is 0."""
    table = aws.session.resource("dynamodb").Table(TEMPLATES_TABLE)
    head = table.get_item(Key={"template_id": template_id, "version": 0}, ConsistentRead=True).get("Item")
    return None if head is None else int(head.get("job_refs", 0))


def usage(aws: Any, template_id: str) -> tuple[int, int]:
    """The head's ever-growing usage counters (job_count, popularity): the marketplace's popular order."""
    table = aws.session.resource("dynamodb").Table(TEMPLATES_TABLE)
    head = table.get_item(Key={"template_id": template_id, "version": 0}, ConsistentRead=True)["Item"]
    return int(head.get("job_count", 0)), int(head["popularity"])


def scan(aws: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = aws.session.resource("dynamodb").Table(table).scan()["Items"]
    return items


def test_each_created_job_adds_one_to_its_template_and_no_other(aws: Any) -> None:
    template_id, other = make_template(aws, "user-1"), make_template(aws, "user-1")
    seed = upload_seed(aws, "user-1")
    assert job_refs(aws, template_id) == 0

    for expected in (1, 2, 3):
        answer = jobs_api.post("/jobs", user="user-1", body=job_body(template_id, seed))
        assert answer.status == 201, answer.body
        assert job_refs(aws, template_id) == expected
        assert usage(aws, template_id) == (expected, expected)
    assert job_refs(aws, other) == 0
    assert usage(aws, other) == (0, 0)


@pytest.mark.parametrize(
    ("overrides", "status"),
    [({"num_records": 0}, 400), ({"template_version": 2}, 404), ({"seed_data_path": "missing"}, 403)],
)
def test_a_refused_create_adds_nothing(aws: Any, overrides: dict[str, Any], status: int) -> None:
    template_id = make_template(aws, "user-1")
    body = job_body(template_id, upload_seed(aws, "user-1"), **overrides)

    answer = jobs_api.post("/jobs", user="user-1", body=body)

    assert answer.status == status, answer.body
    assert job_refs(aws, template_id) == 0
    assert usage(aws, template_id) == (0, 0)
    assert scan(aws, JOBS_TABLE) == []


def test_a_create_whose_job_id_is_taken_adds_nothing(aws: Any) -> None:
    """The transaction fails on its first item: the counter's update is rolled back with it."""
    template_id = make_template(aws, "user-1")
    repository = JobsRepository(aws.client("dynamodb"), JOBS_TABLE, QUEUE_TABLE, TEMPLATES_TABLE)
    created_at = now_iso()
    job = {
        "job_id": "job-1",
        "user_id": "user-1",
        "status": "QUEUED",
        "template_id": template_id,
        "template_version": 1,
        "priority": 5,
        "created_at": created_at,
        "queue_key": queue_key(5, created_at, "job-1"),
    }
    repository.create(job, max_queued=100)
    assert job_refs(aws, template_id) == 1

    with pytest.raises(JobIdTakenError):
        repository.create({**job, "queue_key": queue_key(5, now_iso(), "job-1")}, max_queued=100)
    assert job_refs(aws, template_id) == 1


def test_a_template_whose_head_is_gone_refuses_new_jobs_with_404(aws: Any) -> None:
    """A delete removes the head first, then the versions: in between, version 1 still exists, yet
    no job may be created on it (the head's condition fails) and the head does not come back."""
    template_id = make_template(aws, "user-1")
    seed = upload_seed(aws, "user-1")
    aws.session.resource("dynamodb").Table(TEMPLATES_TABLE).delete_item(
        Key={"template_id": template_id, "version": 0}
    )

    # The version is named, so the API does not need the head to find it; the transaction does.
    answer = jobs_api.post("/jobs", user="user-1", body=job_body(template_id, seed, template_version=1))

    assert answer.status == 404, answer.body
    assert job_refs(aws, template_id) is None
    assert scan(aws, JOBS_TABLE) == []
    assert scan(aws, QUEUE_TABLE) == []
    assert aws.capture.drain() == []


def test_the_repository_reports_a_gone_head_as_a_gone_template(aws: Any) -> None:
    template_id = make_template(aws, "user-1")
    aws.session.resource("dynamodb").Table(TEMPLATES_TABLE).delete_item(
        Key={"template_id": template_id, "version": 0}
    )
    repository = JobsRepository(aws.client("dynamodb"), JOBS_TABLE, QUEUE_TABLE, TEMPLATES_TABLE)
    created_at = now_iso()
    with pytest.raises(TemplateVersionGoneError):
        repository.create(
            {
                "job_id": "job-2",
                "user_id": "user-1",
                "status": "QUEUED",
                "template_id": template_id,
                "template_version": 1,
                "priority": 5,
                "created_at": created_at,
                "queue_key": queue_key(5, created_at, "job-2"),
            },
            max_queued=100,
        )
    assert job_refs(aws, template_id) is None


def _job(template_id: str, job_id: str) -> dict[str, Any]:
    created_at = now_iso()
    return {
        "job_id": job_id,
        "user_id": "user-1",
        "status": "QUEUED",
        "template_id": template_id,
        "template_version": 1,
        "priority": 5,
        "created_at": created_at,
        "queue_key": queue_key(5, created_at, job_id),
    }


def test_a_transaction_conflict_on_the_template_head_is_retried_and_counts_once(aws: Any) -> None:
    template_id = make_template(aws, "user-1")
    flaky = ConflictsFirst(aws.client("dynamodb"), conflicts=2, at=3)

    JobsRepository(flaky, JOBS_TABLE, QUEUE_TABLE, TEMPLATES_TABLE).create(
        _job(template_id, "job-3"), max_queued=100
    )

    assert flaky.calls == 3
    assert job_refs(aws, template_id) == 1
    assert usage(aws, template_id) == (1, 1)
    assert [i["job_id"] for i in scan(aws, JOBS_TABLE)] == ["job-3"]


def test_conflicts_that_do_not_stop_give_up_and_write_nothing(aws: Any) -> None:
    template_id = make_template(aws, "user-1")
    flaky = ConflictsFirst(aws.client("dynamodb"), conflicts=100, at=3)

    with pytest.raises(ClientError):
        JobsRepository(flaky, JOBS_TABLE, QUEUE_TABLE, TEMPLATES_TABLE).create(
            _job(template_id, "job-4"), max_queued=100
        )

    assert flaky.calls == 5
    assert job_refs(aws, template_id) == 0
    assert usage(aws, template_id) == (0, 0)
    assert scan(aws, JOBS_TABLE) == []
