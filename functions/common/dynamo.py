"""DynamoDB items as Python values and back, and what a cancelled transaction says.

One serializer pair for every repository: ``to_item`` drops ``None`` (an absent attribute, never a
NULL), ``from_item`` answers numbers as ``Decimal``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()

# Cancellation reason codes that say "try again", not "the data says no".
TRANSIENT_REASONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"}
)


class TransactionConflictError(ClientError):
    """A transaction cancelled by a conflict with another one: nothing was written, it can run again."""

    def __init__(self, error: ClientError) -> None:
        super().__init__(error.response, error.operation_name)


def to_attribute(value: Any) -> Any:
    return _SERIALIZER.serialize(value)


def from_attribute(value: Any) -> Any:
    return _DESERIALIZER.deserialize(value)


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: to_attribute(v) for k, v in values.items() if v is not None}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: from_attribute(v) for k, v in item.items()}


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def reason_code(reason: Mapping[str, Any]) -> str:
    """A cancellation reason's code; ``"None"`` for an item whose part did not fail (as AWS says)."""
    return str(reason.get("Code") or "None")


def cancellation_reasons(error: ClientError) -> list[dict[str, Any]] | None:
    """The reasons of a cancelled transaction, in the order of its items; None for any other error."""
    if error_code(error) != "TransactionCanceledException":
        return None
    reasons: list[dict[str, Any]] = [dict(r) for r in error.response.get("CancellationReasons") or []]
    return reasons


def cancellation_codes(error: ClientError) -> list[str] | None:
    reasons = cancellation_reasons(error)
    return None if reasons is None else [reason_code(r) for r in reasons]
