"""Opaque pagination cursors.

A cursor is DynamoDB's ``LastEvaluatedKey`` (plus whatever a listing needs to resume) as base64url
JSON. Anything that does not decode to the shape the caller expects is a 400, never a 500: the
listing code passes ``expected_keys`` and checks ownership fields itself before using the cursor.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from functions.common.errors import BadRequestError

_MAX_CURSOR_CHARS = 2048


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    raise TypeError(f"not serializable in a cursor: {type(value).__name__}")


def encode_cursor(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, default=_default, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, expected_keys: Iterable[str]) -> dict[str, Any]:
    """Decode a cursor and check it has exactly ``expected_keys``, each a string or an integer."""
    invalid = BadRequestError("Invalid pagination cursor")
    if not cursor or len(cursor) > _MAX_CURSOR_CHARS:
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise invalid from None
    if not isinstance(payload, dict) or set(payload) != set(expected_keys):
        raise invalid
    for value in payload.values():
        if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
            raise invalid
    return payload
