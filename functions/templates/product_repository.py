"""Reads of the Templates table for the product routes: a template's versions and the marketplace.

Every read is a Query on a key, never a Scan (docs/data-model.md, "Templates table"):

- versions: the template's own partition, ``version >= 1``, newest first;
- marketplace: one of three sparse indexes over public head items (partition ``PUBLIC``):
  ``recent`` → ``public-templates-index`` (``updated_at``, newest first), ``popular`` →
  ``public-popular-index`` (``popularity``, highest first), ``name`` → ``public-name-index``
  (``name_key``, the case-folded name, A to Z). ``q`` is a ``contains`` filter on the head's
  case-folded ``search_text``, read in a bounded number of pages per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from functions.common.dynamo import to_item
from functions.templates.models import TemplateHead
from functions.templates.product_models import MarketplaceSort, TemplateVersionSummary
from functions.templates.repository import (
    HEAD_VERSION,
    PUBLIC_NAME_INDEX,
    PUBLIC_PARTITION,
    PUBLIC_POPULAR_INDEX,
    PUBLIC_TEMPLATES_INDEX,
    _from_item,
    _head_from_item,
)

# sort -> (index, its sort key attribute, newest/highest first)
MARKETPLACE_INDEXES: dict[MarketplaceSort, tuple[str, str, bool]] = {
    MarketplaceSort.RECENT: (PUBLIC_TEMPLATES_INDEX, "updated_at", True),
    MarketplaceSort.POPULAR: (PUBLIC_POPULAR_INDEX, "popularity", True),
    MarketplaceSort.NAME: (PUBLIC_NAME_INDEX, "name_key", False),
}
_VERSION_FIELDS = ("version", "name", "description", "is_public", "schema_requirements", "created_at")


@dataclass(frozen=True)
class VersionsPage:
    versions: list[TemplateVersionSummary]
    last_version: int | None  # resume after this version; None: no more


@dataclass(frozen=True)
class MarketplaceRow:
    head: TemplateHead
    position: str | int  # the row's value of the index's sort key


@dataclass(frozen=True)
class MarketplacePage:
    rows: list[MarketplaceRow]
    # Where the last Query stopped (template_id, sort key value), when the index has more.
    resume: tuple[str, str | int] | None


class ProductRepository:
    def __init__(self, dynamodb_client: Any, table_name: str) -> None:
        self._table = table_name
        self._ddb = dynamodb_client

    def list_versions(
        self, template_id: str, *, limit: int, public_only: bool, before: int | None
    ) -> VersionsPage:
        """Up to ``limit`` versions newest first (only public ones if asked), older than ``before``."""
        upper = (before - 1) if before is not None else 2**31
        args: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "template_id = :t AND #version BETWEEN :first AND :upper",
            "ExpressionAttributeValues": to_item({":t": template_id, ":first": 1, ":upper": upper}),
            "ProjectionExpression": ", ".join(f"#{f}" for f in _VERSION_FIELDS),
            "ExpressionAttributeNames": {f"#{f}": f for f in _VERSION_FIELDS},
            "ScanIndexForward": False,
            "ConsistentRead": True,
        }
        if public_only:
            args["FilterExpression"] = "#is_public = :true"
            args["ExpressionAttributeValues"][":true"] = {"BOOL": True}
        found: list[TemplateVersionSummary] = []
        # One more than asked tells whether more remain; a filter can leave a page short, so go on.
        while len(found) <= limit:
            args["Limit"] = limit + 1 - len(found)
            answer = self._ddb.query(**args)
            found.extend(
                TemplateVersionSummary.model_validate(_from_item(i)) for i in answer.get("Items", [])
            )
            if "LastEvaluatedKey" not in answer:
                break
            args["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        if len(found) <= limit:
            return VersionsPage(versions=found, last_version=None)
        return VersionsPage(versions=found[:limit], last_version=found[limit - 1].version)

    def query_marketplace(
        self,
        sort: MarketplaceSort,
        *,
        limit: int,
        text: str | None,
        start: tuple[str, str | int] | None,
    ) -> MarketplacePage:
        """One Query of the sort's index: ``limit`` heads, or (with ``text``) ``limit`` heads read,
        of which those whose ``search_text`` contains ``text`` are returned."""
        index, sort_key, descending = MARKETPLACE_INDEXES[sort]
        args: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": index,
            "KeyConditionExpression": "public_partition = :p",
            "ExpressionAttributeValues": to_item({":p": PUBLIC_PARTITION}),
            "ScanIndexForward": not descending,
            "Limit": limit,
        }
        if text is not None:
            args["FilterExpression"] = "contains(search_text, :q)"
            args["ExpressionAttributeValues"][":q"] = {"S": text}
        if start is not None:
            template_id, position = start
            args["ExclusiveStartKey"] = to_item(
                {
                    "template_id": template_id,
                    "version": HEAD_VERSION,
                    "public_partition": PUBLIC_PARTITION,
                    sort_key: position,
                }
            )
        answer = self._ddb.query(**args)
        rows = [
            MarketplaceRow(head=_head_from_item(item), position=_from_item(item)[sort_key])
            for item in answer.get("Items", [])
        ]
        last = answer.get("LastEvaluatedKey")
        resume = None
        if last:
            values = _from_item(last)
            resume = (str(values["template_id"]), values[sort_key])
        return MarketplacePage(rows=rows, resume=resume)
