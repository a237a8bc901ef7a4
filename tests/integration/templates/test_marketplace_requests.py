"""The marketplace never scans: the DynamoDB requests of one page are the same with 10 public
templates as with 10,000, counted on the real client the handler uses (botocore events)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from functions.common import settings as s
from functions.common.aws import client
from functions.common.clock import now_iso
from functions.templates.handler import lambda_handler
from functions.templates.models import TemplateDefinition, TemplateStep, TemplateVersion
from functions.templates.product_service import FILTERED_PAGE_SIZE, MAX_MARKETPLACE_QUERIES
from functions.templates.repository import _head_values
from tests.support.http import ApiClient

pytestmark = pytest.mark.integration

api = ApiClient(lambda_handler)
TEMPLATES_TABLE = s.TemplatesTableSettings().templates_table
DEFINITION = TemplateDefinition(steps=[TemplateStep(id="bio", prompt="About {{ author.name }}")])


def add_public_templates(aws: Any, start: int, stop: int) -> None:
    """Head items exactly as ``TemplateRepository.create`` writes them, in batches (10,000
    transactions would only slow the test down); the marketplace reads heads only."""
    ddb = aws.session.resource("dynamodb").Table(TEMPLATES_TABLE)
    with ddb.batch_writer() as batch:
        for i in range(start, stop):
            template = TemplateVersion(
                template_id=f"t-{i:05d}",
                version=1,
                user_id=f"user-{i % 50}",
                name=f"Template {i:05d}",
                description="bios" if i % 1000 == 7 else "recipes",
                is_public=True,
                template_definition=DEFINITION,
                schema_requirements=["author.name"],
                created_at=now_iso(),
            )
            batch.put_item(
                Item=_head_values(template, created_at=template.created_at) | {"popularity": i % 97}
            )


@pytest.fixture
def requests_made(aws: Any) -> Iterator[Counter[str]]:
    """DynamoDB operations the handler's client sends, and the items they read (``items``)."""
    counts: Counter[str] = Counter()

    def before(event_name: str, **_: Any) -> None:
        counts[event_name.rsplit(".", 1)[-1]] += 1

    def after(parsed: dict[str, Any], **_: Any) -> None:
        counts["items read"] += int(parsed.get("ScannedCount", parsed.get("Count", 0)))

    events = client("dynamodb").meta.events
    events.register("before-call.dynamodb", before)
    events.register("after-call.dynamodb", after)
    yield counts
    events.unregister("before-call.dynamodb", before)
    events.unregister("after-call.dynamodb", after)


PAGES = [
    {"sort": "recent", "limit": 20},
    {"sort": "popular", "limit": 20},
    {"sort": "name", "limit": 100},
    {"sort": "popular", "q": "BIOS", "limit": 20},  # few matches: the bounded reads run out first
    {"sort": "name", "q": "no such text", "limit": 20},  # none match
]


def measure(counts: Counter[str], query: dict[str, Any]) -> dict[str, int]:
    counts.clear()
    answer = api.get("/templates/marketplace", user="reader", query=query)
    assert answer.status == 200, answer.body
    return dict(counts)


def test_a_marketplace_page_costs_the_same_requests_with_10_or_10000_templates(
    aws: Any, requests_made: Counter[str]
) -> None:
    add_public_templates(aws, 0, 10)
    small = [measure(requests_made, page) for page in PAGES]
    add_public_templates(aws, 10, 10_000)
    large = [measure(requests_made, page) for page in PAGES]

    for page, few, many in zip(PAGES, small, large, strict=True):
        assert set(many) == {"Query", "items read"}, page  # never a Scan, never a per-item read
        if "q" not in page:
            assert few["Query"] == many["Query"] == 1, page
            assert many["items read"] == page["limit"] + 1, page
        else:
            assert many["Query"] <= MAX_MARKETPLACE_QUERIES, page
            assert many["items read"] <= MAX_MARKETPLACE_QUERIES * FILTERED_PAGE_SIZE, page


def test_a_filtered_page_with_a_cursor_finds_every_match_eventually(aws: Any) -> None:
    """Bounded reads never lose a match: following the cursor reaches both of 2,000."""
    add_public_templates(aws, 0, 2_000)
    found: list[str] = []
    cursor = None
    requests = 0
    while True:
        answer = api.get(
            "/templates/marketplace", user="reader", query={"sort": "name", "q": "bios", "last_key": cursor}
        )
        assert answer.status == 200, answer.body
        found.extend(t["name"] for t in answer.body["templates"])
        requests += 1
        cursor = answer.body["last_key"]
        if cursor is None:
            break
    assert found == ["Template 00007", "Template 01007"]
    # 2,000 heads, at most 400 read per request (one more request may find the end).
    assert requests <= -(-2_000 // (MAX_MARKETPLACE_QUERIES * FILTERED_PAGE_SIZE)) + 1
