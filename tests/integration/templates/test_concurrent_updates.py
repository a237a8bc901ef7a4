"""Concurrent PUTs of one template: each gets its own version, none is lost, the head is the latest.

The writers are the service itself, one per thread, as concurrent Lambda invocations would each run
it: a Powertools resolver holds the request being handled on the app object (one invocation per
process in Lambda), so threads must not share one handler.

moto applies a transaction by snapshotting the table and restoring the snapshot when a condition
fails, so two threads in moto at once can undo each other's committed writes, which DynamoDB never
does. The ``atomic_requests`` fixture makes each AWS request atomic (one at a time through moto's
stubber), as the real service is; the race under test (read the head, then write conditionally)
still interleaves freely between requests.
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
from functions.common.events import EventPublisher
from functions.templates.handler import lambda_handler
from functions.templates.models import UpdateTemplateRequest
from functions.templates.repository import TemplateRepository
from functions.templates.service import TemplateService
from tests.support.http import ApiClient

pytestmark = pytest.mark.integration

api = ApiClient(lambda_handler)
TEMPLATES_TABLE = s.TemplatesTableSettings().templates_table
WRITERS = 8


@pytest.fixture
def atomic_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    lock = threading.Lock()
    handle = BotocoreStubber.__call__

    def one_at_a_time(self: BotocoreStubber, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return handle(self, *args, **kwargs)

    monkeypatch.setattr(BotocoreStubber, "__call__", one_at_a_time)


def definition(n: int) -> dict[str, Any]:
    return {"steps": [{"id": "s", "prompt": f"writer {n}: {{{{ field_{n} }}}}"}]}


def test_concurrent_updates_each_write_their_own_version(aws: Any, atomic_requests: None) -> None:
    created = api.post(
        "/templates", user="owner", body={"name": "race", "template_definition": definition(0)}
    )
    assert created.status == 201
    template_id = created.body["template_id"]
    aws.capture.drain()

    def update(n: int) -> Any:
        service = TemplateService(
            repository=TemplateRepository(client("dynamodb"), TEMPLATES_TABLE),
            publisher=EventPublisher(client("events"), s.EventBusSettings().event_bus_name),
        )
        request = UpdateTemplateRequest.model_validate({"template_definition": definition(n)})
        return service.update("owner", template_id, request)

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        answers = list(pool.map(update, range(1, WRITERS + 1), timeout=60))

    versions = sorted(a.version for a in answers)
    assert versions == list(range(2, WRITERS + 2))

    table = aws.session.resource("dynamodb").Table(TEMPLATES_TABLE)
    items = table.query(KeyConditionExpression=Key("template_id").eq(template_id), ConsistentRead=True)[
        "Items"
    ]
    by_version = {int(i["version"]): i for i in items}
    assert sorted(by_version) == list(range(WRITERS + 2))
    assert by_version[0]["latest_version"] == WRITERS + 1
    # Every writer's definition landed in exactly the version it was told.
    for answer, n in zip(answers, range(1, WRITERS + 1), strict=True):
        assert answer.schema_requirements == [f"field_{n}"]
        assert by_version[answer.version]["schema_requirements"] == [f"field_{n}"]

    emitted = sorted(
        e["detail"]["version"] for e in aws.capture.drain() if e["detail-type"] == "Template Version Created"
    )
    assert emitted == versions
