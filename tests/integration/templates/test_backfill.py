"""The one-off backfill gives heads written before the marketplace its keys, once."""

from __future__ import annotations

from typing import Any

import pytest

from functions.common import settings as s
from functions.templates.backfill import backfill
from functions.templates.handler import lambda_handler
from tests.support.http import ApiClient

pytestmark = pytest.mark.integration

api = ApiClient(lambda_handler)
TEMPLATES_TABLE = s.TemplatesTableSettings().templates_table


def old_head(template_id: str, name: str, job_refs: int) -> dict[str, Any]:
    """A public head item as the templates API wrote it before the marketplace."""
    return {
        "template_id": template_id,
        "version": 0,
        "latest_version": 1,
        "user_id": "old-user",
        "owner_id": "old-user",
        "public_partition": "PUBLIC",
        "name": name,
        "description": "Written Long Ago",
        "is_public": True,
        "created_at": "2026-01-01T00:00:00.000Z",
        "updated_at": "2026-01-01T00:00:00.000Z",
        "job_refs": job_refs,
    }


def test_backfill_puts_old_heads_in_every_marketplace_order_once(aws: Any) -> None:
    table = aws.session.resource("dynamodb").Table(TEMPLATES_TABLE)
    table.put_item(Item=old_head("old-1", "Ancient Bios", job_refs=2))
    new = api.post(
        "/templates",
        user="new-user",
        body={
            "name": "Fresh",
            "is_public": True,
            "template_definition": {"steps": [{"id": "a", "prompt": "x"}]},
        },
    ).body["template_id"]
    before = table.get_item(Key={"template_id": new, "version": 0})["Item"]
    assert [
        t["name"]
        for t in api.get("/templates/marketplace", user="u", query={"sort": "name"}).body["templates"]
    ] == ["Fresh"]

    assert backfill(aws.client("dynamodb"), TEMPLATES_TABLE) == 1
    assert backfill(aws.client("dynamodb"), TEMPLATES_TABLE) == 0

    head = table.get_item(Key={"template_id": "old-1", "version": 0})["Item"]
    assert (head["name_key"], head["popularity"], head["job_count"]) == ("ancient bios", 2, 2)
    assert table.get_item(Key={"template_id": new, "version": 0})["Item"] == before
    by_name = api.get("/templates/marketplace", user="u", query={"sort": "name"}).body["templates"]
    assert [t["name"] for t in by_name] == ["Ancient Bios", "Fresh"]
    popular = api.get("/templates/marketplace", user="u", query={"sort": "popular", "q": "long ago"}).body
    assert [(t["template_id"], t["popularity"]) for t in popular["templates"]] == [("old-1", 2)]
