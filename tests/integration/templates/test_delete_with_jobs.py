"""DELETE /templates/{id} against jobs that reference the template.

"Used by a job" is the template head's ``job_refs`` counter (docs/data-model.md), written in the job
create transaction: strongly consistent, unlike any index of the Jobs table, so the delete decides
from the Templates table alone, and a delete racing job creates never leaves a job on a deleted
template.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from boto3.dynamodb.conditions import Key
from moto.core.botocore_stubber import BotocoreStubber

from functions.common import settings as s
from functions.common.aws import client
from functions.common.errors import ConflictError, NotFoundError
from functions.common.events import EventPublisher
from functions.jobs.handler import lambda_handler as jobs_handler
from functions.jobs.models import CreateJobRequest
from functions.jobs.repository import JobFiles, JobsRepository
from functions.jobs.service import JobsService
from functions.templates.handler import lambda_handler
from functions.templates.repository import TemplateRepository
from functions.templates.service import TemplateService
from tests.support.http import ApiClient

pytestmark = pytest.mark.integration

api = ApiClient(lambda_handler)
jobs_api = ApiClient(jobs_handler)
TEMPLATES_TABLE = s.TemplatesTableSettings().templates_table
JOBS_TABLE = s.JobsTableSettings().jobs_table
QUEUE_TABLE = s.QueueTableSettings().queue_table
BUCKET = s.BucketSettings().bucket_name
BUS = s.EventBusSettings().event_bus_name
OWNER = "user-owner"
DEFINITION = {"steps": [{"id": "bio", "prompt": "Write about {{ author.name }}"}]}
ROUNDS, CREATORS = 12, 3


def create_template() -> str:
    answer = api.post("/templates", user=OWNER, body={"name": "bios", "template_definition": DEFINITION})
    assert answer.status == 201, answer.body
    return str(answer.body["template_id"])


def upload_seed(aws: Any) -> str:
    key = f"seed-data/{OWNER}/authors.jsonl"
    aws.client("s3").put_object(Bucket=BUCKET, Key=key, Body=b'{"author": {"name": "Ada"}}\n')
    return key


def job_request(template_id: str, seed_key: str) -> dict[str, Any]:
    return {
        "template_id": template_id,
        "seed_data_path": seed_key,
        "budget_limit": "10",
        "output_format": "JSONL",
        "num_records": 10,
    }


def template_items(aws: Any, template_id: str) -> list[dict[str, Any]]:
    table = aws.session.resource("dynamodb").Table(TEMPLATES_TABLE)
    return table.query(KeyConditionExpression=Key("template_id").eq(template_id), ConsistentRead=True)[
        "Items"
    ]


def job_refs(aws: Any, template_id: str) -> int | None:
    table = aws.session.resource("dynamodb").Table(TEMPLATES_TABLE)
    head = table.get_item(Key={"template_id": template_id, "version": 0}, ConsistentRead=True).get("Item")
    return None if head is None else int(head.get("job_refs", 0))


def jobs_of(aws: Any, template_id: str) -> list[dict[str, Any]]:
    items = aws.session.resource("dynamodb").Table(JOBS_TABLE).scan(ConsistentRead=True)["Items"]
    return [i for i in items if i.get("template_id") == template_id]


@pytest.fixture
def dynamodb_calls() -> list[dict[str, Any]]:
    """Every DynamoDB request the handlers' shared client makes: operation and parameters."""
    calls: list[dict[str, Any]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append({"operation": model.name, **params})

    client("dynamodb").meta.events.register("provide-client-params.dynamodb", record)
    return calls


def test_a_job_blocks_the_delete_decided_from_the_templates_table_alone(
    aws: Any, dynamodb_calls: list[dict[str, Any]]
) -> None:
    template_id = create_template()
    job = jobs_api.post("/jobs", user=OWNER, body=job_request(template_id, upload_seed(aws)))
    assert job.status == 201, job.body
    dynamodb_calls.clear()

    answer = api.delete(f"/templates/{template_id}", user=OWNER)

    assert answer.status == 409
    assert "used by" in answer.body["error"]
    assert len(template_items(aws, template_id)) == 2
    assert job_refs(aws, template_id) == 1
    # The delete only ever read and wrote the Templates table: no index, no Jobs table.
    assert dynamodb_calls
    assert {c["TableName"] for c in dynamodb_calls} == {TEMPLATES_TABLE}
    assert not [c for c in dynamodb_calls if "IndexName" in c]


def test_the_delete_goes_through_once_the_last_job_is_deleted(aws: Any) -> None:
    template_id = create_template()
    seed = upload_seed(aws)
    for _ in range(2):
        assert jobs_api.post("/jobs", user=OWNER, body=job_request(template_id, seed)).status == 201
    table = aws.session.resource("dynamodb").Table(TEMPLATES_TABLE)

    def release_one() -> None:  # what the cleanup state machine's job delete does to the counter
        table.update_item(
            Key={"template_id": template_id, "version": 0},
            UpdateExpression="ADD job_refs :minus_one",
            ConditionExpression="attribute_exists(latest_version)",
            ExpressionAttributeValues={":minus_one": -1},
        )

    release_one()
    assert api.delete(f"/templates/{template_id}", user=OWNER).status == 409
    release_one()
    answer = api.delete(f"/templates/{template_id}", user=OWNER)
    assert answer.status == 200, answer.body
    assert template_items(aws, template_id) == []


def test_another_users_delete_is_still_a_403_while_jobs_reference_it(aws: Any) -> None:
    template_id = create_template()
    assert jobs_api.post("/jobs", user=OWNER, body=job_request(template_id, upload_seed(aws))).status == 201
    assert api.delete(f"/templates/{template_id}", user="user-other").status == 403
    assert len(template_items(aws, template_id)) == 2


# ------------------------------------------------------------------ the race


@pytest.fixture
def atomic_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto applies a transaction on a table snapshot it restores on a failed condition, so two threads
    inside moto at once can undo each other's writes, which DynamoDB never does: one AWS request at a
    time, as the service is atomic per request. The race (reads, then conditional writes) still
    interleaves freely between requests."""
    lock = threading.Lock()
    handle = BotocoreStubber.__call__

    def one_at_a_time(self: BotocoreStubber, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return handle(self, *args, **kwargs)

    monkeypatch.setattr(BotocoreStubber, "__call__", one_at_a_time)


def test_a_delete_racing_job_creates_never_leaves_a_job_on_a_deleted_template(
    aws: Any, atomic_requests: None
) -> None:
    # The services directly (the handlers' resolvers keep the current event per process, not thread).
    dynamodb = aws.client("dynamodb")
    templates = TemplateRepository(dynamodb, TEMPLATES_TABLE)
    publisher = EventPublisher(aws.client("events"), BUS)
    template_service = TemplateService(repository=templates, publisher=publisher)
    jobs_service = JobsService(
        jobs=JobsRepository(dynamodb, JOBS_TABLE, QUEUE_TABLE, TEMPLATES_TABLE),
        files=JobFiles(aws.client("s3"), BUCKET),
        templates=templates,
        publisher=publisher,
    )
    seed = upload_seed(aws)
    outcomes = {"deleted": 0, "refused": 0}

    for round_number in range(ROUNDS):
        template_id = create_template()
        request = CreateJobRequest.model_validate(job_request(template_id, seed))
        start = threading.Barrier(CREATORS + 1, timeout=10)
        # A third of the rounds race freely. In the others one side waits until the other has
        # finished its first write, so both orders happen however loaded the machine is (a free race
        # alone may go the same way every round).
        order = ("race", "delete first", "create first")[round_number % 3]
        events = (threading.Event(), threading.Event())  # (deleted once, created once)

        def delete(
            template_id: str = template_id,
            start: threading.Barrier = start,
            order: str = order,
            events: tuple[threading.Event, threading.Event] = events,
        ) -> bool:
            start.wait()
            if order == "create first":
                events[1].wait(timeout=10)
            try:
                template_service.delete(OWNER, template_id)
            except ConflictError:
                return False
            finally:
                events[0].set()
            return True

        def create(
            _: int,
            request: CreateJobRequest = request,
            start: threading.Barrier = start,
            order: str = order,
            events: tuple[threading.Event, threading.Event] = events,
        ) -> str | None:
            start.wait()
            if order == "delete first":
                events[0].wait(timeout=10)
            try:
                return jobs_service.create(OWNER, request).job_id
            except NotFoundError:
                return None
            finally:
                events[1].set()

        with ThreadPoolExecutor(max_workers=CREATORS + 1) as pool:
            deleting = pool.submit(delete)
            created = [j for j in pool.map(create, range(CREATORS), timeout=30) if j is not None]
            deleted = deleting.result(timeout=30)

        jobs = jobs_of(aws, template_id)
        assert sorted(j["job_id"] for j in jobs) == sorted(created)
        if deleted:
            outcomes["deleted"] += 1
            assert created == [], "a job was created on a template that was deleted"
            assert template_items(aws, template_id) == []
        else:
            outcomes["refused"] += 1
            assert created, "the delete was refused although no job references the template"
            assert job_refs(aws, template_id) == len(created)
            assert {int(i["version"]) for i in template_items(aws, template_id)} == {0, 1}
    # Both orders happened, so both branches above were checked.
    assert outcomes["deleted"], outcomes
    assert outcomes["refused"], outcomes
