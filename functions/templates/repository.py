"""Templates table access (docs/data-model.md, "Templates table").

Version items (``version >= 1``) are immutable and written with ``attribute_not_exists(version)``.
The head item (``version = 0``) holds ``latest_version``, the sparse listing keys and ``job_refs``
(how many jobs reference the template; written by the jobs API and the cleanup state machine).
A new version is one transaction: put the version (must not exist) and move the head from the
latest version the writer read to the new one (condition on ``latest_version``), so two concurrent
updates can never both claim the same number and the head never points at a missing version.

``TemplateRepository(dynamodb_client, table_name).get_version(template_id, version=None)`` is the
read other domains use; keep its signature stable.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any

from botocore.exceptions import ClientError

from functions.common.dynamo import (
    TransactionConflictError,
    cancellation_codes,
    error_code,
    from_attribute,
    to_item,
)
from functions.common.retry import RetryPolicy
from functions.templates.models import TemplateHead, TemplateVersion, definition_to_dict

HEAD_VERSION = 0
PUBLIC_PARTITION = "PUBLIC"
USER_TEMPLATES_INDEX = "user-templates-index"
PUBLIC_TEMPLATES_INDEX = "public-templates-index"
# The marketplace's other two orders (functions/templates/product_repository.py), sparse like the one above.
PUBLIC_NAME_INDEX = "public-name-index"
PUBLIC_POPULAR_INDEX = "public-popular-index"
# Forks of a popular template share its head item with its jobs, so their transactions may conflict.
CONFLICT_RETRY = RetryPolicy(attempts=5, base_delay=0.02)
_MAX_KEY_BYTES = 1024  # DynamoDB allows 2048 for a partition key; ids here are UUIDs


def _from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(from_attribute(v)) for k, v in item.items()}


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; every number in a template row is an integer."""
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _valid_key(template_id: str) -> bool:
    return bool(template_id) and len(template_id.encode()) <= _MAX_KEY_BYTES


class TemplateGoneError(Exception):
    """A template a write conditioned on (the source of a fork) no longer exists."""


class HeadDeleteOutcome(Enum):
    DELETED = "deleted"
    GONE = "gone"
    NOT_OWNER = "not_owner"
    REFERENCED = "referenced"  # job_refs > 0: a job references the template


@dataclass(frozen=True)
class HeadPage:
    """One page of head items from a listing index and where to resume it (None: exhausted)."""

    heads: list[TemplateHead]
    last_evaluated_key: dict[str, Any] | None


class TemplateRepository:
    def __init__(self, dynamodb_client: Any, table_name: str, *, retry: RetryPolicy = CONFLICT_RETRY) -> None:
        self._table = table_name
        self._ddb = dynamodb_client
        self._retry = retry

    # ------------------------------------------------------------------ reads

    def get_version(self, template_id: str, version: int | None = None) -> TemplateVersion | None:
        """One version of a template; ``None`` means the latest (read through the head item).

        Visibility is per template: the answer is public only while the head is public (and the
        version was written public), so making a template private hides every earlier version from
        other users (``is_readable_by``).
        Answers ``None`` when the template (its head) or that version does not exist.
        """
        if not _valid_key(template_id):
            return None
        head = self.get_head(template_id)
        if head is None:
            return None
        version = head.latest_version if version is None else version
        if version < 1:
            return None
        answer = self._ddb.get_item(
            TableName=self._table,
            Key=to_item({"template_id": template_id, "version": version}),
            ConsistentRead=True,
        )
        item = answer.get("Item")
        if not item:
            return None
        stored = _from_item(item)
        # Readable by others only while the template is public and the version was written public.
        return TemplateVersion.model_validate(
            {**stored, "is_public": head.is_public and bool(stored.get("is_public"))}
        )

    def get_head(self, template_id: str) -> TemplateHead | None:
        if not _valid_key(template_id):
            return None
        answer = self._ddb.get_item(
            TableName=self._table,
            Key=to_item({"template_id": template_id, "version": HEAD_VERSION}),
            ConsistentRead=True,
        )
        item = answer.get("Item")
        return _head_from_item(item) if item else None

    def query_heads(
        self,
        *,
        owner_id: str | None = None,
        public: bool = False,
        exclude_user_id: str | None = None,
        private_only: bool = False,
        limit: int,
        exclusive_start_key: dict[str, Any] | None = None,
    ) -> HeadPage:
        """Newest-updated-first head items of one owner (only the private ones with ``private_only``),
        or public ones (minus one user's)."""
        if (owner_id is None) == (not public):
            raise ValueError("give exactly one of owner_id or public=True")
        args: dict[str, Any] = {"TableName": self._table, "Limit": limit, "ScanIndexForward": False}
        if public:
            args["IndexName"] = PUBLIC_TEMPLATES_INDEX
            args["KeyConditionExpression"] = "public_partition = :p"
            values: dict[str, Any] = {":p": PUBLIC_PARTITION}
            if exclude_user_id is not None:
                args["FilterExpression"] = "user_id <> :me"
                values[":me"] = exclude_user_id
        else:
            args["IndexName"] = USER_TEMPLATES_INDEX
            args["KeyConditionExpression"] = "owner_id = :o"
            values = {":o": owner_id}
            if private_only:
                args["FilterExpression"] = "is_public = :false"
                values[":false"] = False
        args["ExpressionAttributeValues"] = to_item(values)
        if exclusive_start_key is not None:
            args["ExclusiveStartKey"] = to_item(exclusive_start_key)
        answer = self._ddb.query(**args)
        heads = [_head_from_item(item) for item in answer.get("Items", [])]
        last = answer.get("LastEvaluatedKey")
        return HeadPage(heads=heads, last_evaluated_key=_from_item(last) if last else None)

    # ----------------------------------------------------------------- writes

    def create(self, template: TemplateVersion) -> None:
        """Write version 1 and the head item in one transaction (both must be new).

        A fork (``forked_from`` set) also counts itself on its source's head in the same
        transaction (``ADD fork_count :one, popularity :one``, on condition the source still
        exists), so every fork is counted exactly once. Raises ``TemplateGoneError`` when the
        source was deleted meanwhile.
        """
        if template.version != 1:
            raise ValueError("a new template starts at version 1")
        head = _head_values(template, created_at=template.created_at) | {"popularity": 0}
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": to_item(head),
                    "ConditionExpression": "attribute_not_exists(template_id)",
                }
            },
            {
                "Put": {
                    "TableName": self._table,
                    "Item": to_item(_version_values(template)),
                    "ConditionExpression": "attribute_not_exists(version)",
                }
            },
        ]
        if template.forked_from is not None:
            source = {"template_id": template.forked_from.template_id, "version": HEAD_VERSION}
            items.append(
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": to_item(source),
                        "UpdateExpression": "ADD fork_count :one, popularity :one",
                        "ConditionExpression": "attribute_exists(latest_version)",
                        "ExpressionAttributeValues": to_item({":one": 1}),
                    }
                }
            )
        self._retry.call(lambda: self._create(items), retry_on=TransactionConflictError)

    def _create(self, items: list[dict[str, Any]]) -> None:
        try:
            self._ddb.transact_write_items(TransactItems=items)
        except ClientError as error:
            codes = cancellation_codes(error)
            if codes is None:
                raise
            if len(codes) == 3 and codes[2] == "ConditionalCheckFailed":
                raise TemplateGoneError from error
            if "TransactionConflict" in codes:
                raise TransactionConflictError(error) from error
            raise

    def append_version(
        self, template: TemplateVersion, *, expected_latest: int, head_created_at: str
    ) -> bool:
        """Write ``template`` (version ``expected_latest + 1``) and move the head to it, atomically.

        Answers False when another writer got there first (the head moved, the version exists or
        the transaction conflicted): read the head again and retry with the next number.
        """
        if template.version != expected_latest + 1:
            raise ValueError("the new version must follow the expected latest one")
        head = _head_values(template, created_at=head_created_at)
        set_names = [k for k in head if k not in ("template_id", "version") and head[k] is not None]
        removes = [k for k in ("description", "public_partition") if head.get(k) is None]
        update = "SET " + ", ".join(f"#{k} = :{k}" for k in set_names)
        # Heads written before the popularity counter existed join the popular index here.
        update += ", #popularity = if_not_exists(#popularity, :zero)"
        if removes:
            update += " REMOVE " + ", ".join(f"#{k}" for k in removes)
        names = {f"#{k}": k for k in (*set_names, *removes, "popularity")}
        values = to_item({f":{k}": head[k] for k in set_names})
        values.update(to_item({":expected": expected_latest, ":owner": template.user_id, ":zero": 0}))
        try:
            self._ddb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": to_item(_version_values(template)),
                            "ConditionExpression": "attribute_not_exists(version)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": to_item({"template_id": template.template_id, "version": HEAD_VERSION}),
                            "UpdateExpression": update,
                            "ConditionExpression": "#latest_version = :expected AND #user_id = :owner",
                            "ExpressionAttributeNames": names,
                            "ExpressionAttributeValues": values,
                        }
                    },
                ]
            )
        except ClientError as error:
            codes = cancellation_codes(error)
            if codes is not None and set(codes) <= {"ConditionalCheckFailed", "TransactionConflict", "None"}:
                return False
            if error_code(error) == "TransactionConflictException":
                return False
            raise
        return True

    def delete_head(self, template_id: str, owner_id: str, *, attempts: int = 3) -> HeadDeleteOutcome:
        """Delete the head (owner only) unless a job references the template (``job_refs > 0``).

        The jobs API's create transaction adds 1 to ``job_refs`` on condition the head exists, and
        the cleanup state machine subtracts 1 when it deletes the job, so once the head is gone no
        new job (nor version) can reference the template, and while a job exists the head stays.
        """
        try:
            self._ddb.delete_item(
                TableName=self._table,
                Key=to_item({"template_id": template_id, "version": HEAD_VERSION}),
                ConditionExpression=(
                    "attribute_exists(template_id) AND user_id = :owner "
                    "AND (attribute_not_exists(job_refs) OR job_refs <= :zero)"
                ),
                ExpressionAttributeValues=to_item({":owner": owner_id, ":zero": 0}),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise
            old: dict[str, Any] | None = error.response.get("Item")  # type: ignore[assignment]
            if old is None:  # some emulators omit the old item: read it (only on this path)
                old = self._ddb.get_item(
                    TableName=self._table,
                    Key=to_item({"template_id": template_id, "version": HEAD_VERSION}),
                    ConsistentRead=True,
                ).get("Item")
            if not old:
                return HeadDeleteOutcome.GONE
            values = _from_item(old)
            if values.get("user_id") != owner_id:
                return HeadDeleteOutcome.NOT_OWNER
            if values.get("job_refs", 0) > 0:
                return HeadDeleteOutcome.REFERENCED
            # The last job went between the failed condition and the read: ask again (bounded).
            if attempts > 1:
                return self.delete_head(template_id, owner_id, attempts=attempts - 1)
            return HeadDeleteOutcome.REFERENCED
        return HeadDeleteOutcome.DELETED

    def delete_all_versions(self, template_id: str) -> int:
        """Delete every remaining item of the template (paginated query, batches of 25)."""
        deleted = 0
        batch: list[dict[str, Any]] = []
        for key in self._keys_of(template_id):
            if key["version"] >= 1:
                deleted += 1
            batch.append(key)
            if len(batch) == 25:
                self._batch_delete(batch)
                batch = []
        if batch:
            self._batch_delete(batch)
        return deleted

    def _keys_of(self, template_id: str) -> Iterator[dict[str, Any]]:
        args: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "template_id = :t",
            "ExpressionAttributeValues": to_item({":t": template_id}),
            "ProjectionExpression": "template_id, version",
            "ConsistentRead": True,
        }
        while True:
            answer = self._ddb.query(**args)
            for item in answer.get("Items", []):
                yield _from_item(item)
            last = answer.get("LastEvaluatedKey")
            if not last:
                return
            args["ExclusiveStartKey"] = last

    def _batch_delete(self, keys: list[dict[str, Any]]) -> None:
        requests: list[dict[str, Any]] = [{"DeleteRequest": {"Key": to_item(k)}} for k in keys]
        for _ in range(10):
            answer = self._ddb.batch_write_item(RequestItems={self._table: requests})
            requests = answer.get("UnprocessedItems", {}).get(self._table, [])
            if not requests:
                return
        raise RuntimeError(f"could not delete {len(requests)} template items after retries")


def _version_values(template: TemplateVersion) -> dict[str, Any]:
    return {
        "template_id": template.template_id,
        "version": template.version,
        "user_id": template.user_id,
        "name": template.name,
        "description": template.description,
        "is_public": template.is_public,
        "template_definition": definition_to_dict(template.template_definition),
        "schema_requirements": list(template.schema_requirements),
        "created_at": template.created_at,
        "forked_from": template.forked_from.model_dump() if template.forked_from else None,
    }


def _head_values(template: TemplateVersion, *, created_at: str) -> dict[str, Any]:
    return {
        "template_id": template.template_id,
        "version": HEAD_VERSION,
        "latest_version": template.version,
        "user_id": template.user_id,
        "owner_id": template.user_id,
        "public_partition": PUBLIC_PARTITION if template.is_public else None,
        "name": template.name,
        "description": template.description,
        "is_public": template.is_public,
        # The list shows each template's requirements without reading its latest version.
        "schema_requirements": list(template.schema_requirements),
        "created_at": created_at,
        "updated_at": template.created_at,
        "forked_from": template.forked_from.model_dump() if template.forked_from else None,
        # The marketplace's name order and case-insensitive search (DynamoDB compares bytes).
        "name_key": template.name.casefold(),
        "search_text": search_text(template.name, template.description),
    }


def search_text(name: str, description: str | None) -> str:
    """What the marketplace's ``q`` is matched against: name and description, case-folded."""
    return f"{name}\n{description or ''}".casefold()


def _head_from_item(item: dict[str, Any]) -> TemplateHead:
    values = _from_item(item)
    return TemplateHead.model_validate({k: v for k, v in values.items() if k in TemplateHead.model_fields})
