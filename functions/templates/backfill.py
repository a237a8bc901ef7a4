"""One-off migration: head items written before the marketplace existed get its keys.

``python -m functions.templates.backfill`` (``TEMPLATES_TABLE`` from the environment) sets, on
every head item that lacks them, ``name_key`` and ``search_text`` (so ``sort=name`` and ``q`` find
the template) and the usage counters ``job_count`` / ``popularity``, seeded with ``job_refs`` (the
jobs that still exist: older jobs were never counted). Each update is conditional on the head
still existing with the name the keys were computed from, so a concurrent update or delete wins;
running it twice changes nothing. It scans the table once: an operator's tool, never on a request
path. Heads updated after the deployment already carry the keys.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from functions.common.aws import client
from functions.common.dynamo import to_item
from functions.common.settings import TemplatesTableSettings, load_settings
from functions.templates.repository import HEAD_VERSION, _from_item, search_text

_MISSING = (
    "attribute_not_exists(name_key) OR attribute_not_exists(search_text) OR attribute_not_exists(popularity)"
)


def backfill(dynamodb_client: Any, table: str) -> int:
    """Update every head missing a marketplace key; answer how many were updated."""
    updated = 0
    args: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": f"#version = :head AND ({_MISSING})",
        "ExpressionAttributeNames": {"#version": "version"},
        "ExpressionAttributeValues": to_item({":head": HEAD_VERSION}),
    }
    while True:
        page = dynamodb_client.scan(**args)
        for item in page.get("Items", []):
            updated += _update(dynamodb_client, table, _from_item(item))
        if "LastEvaluatedKey" not in page:
            return updated
        args["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _update(dynamodb_client: Any, table: str, head: dict[str, Any]) -> int:
    refs = int(head.get("job_refs", 0))
    try:
        dynamodb_client.update_item(
            TableName=table,
            Key=to_item({"template_id": head["template_id"], "version": HEAD_VERSION}),
            UpdateExpression=(
                "SET name_key = :name_key, search_text = :search_text, "
                "job_count = if_not_exists(job_count, :refs), popularity = if_not_exists(popularity, :refs)"
            ),
            ConditionExpression="attribute_exists(latest_version) AND #name = :name",
            ExpressionAttributeNames={"#name": "name"},
            ExpressionAttributeValues=to_item(
                {
                    ":name_key": head["name"].casefold(),
                    ":search_text": search_text(head["name"], head.get("description")),
                    ":refs": refs,
                    ":name": head["name"],
                }
            ),
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return 0  # deleted or renamed meanwhile: its writer set the keys
        raise
    return 1


def main() -> None:
    table = load_settings(TemplatesTableSettings).templates_table
    print(f"{backfill(client('dynamodb'), table)} template heads updated in {table}")


if __name__ == "__main__":
    main()
