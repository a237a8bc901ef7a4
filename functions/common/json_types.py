"""Request field types that take JSON as JSON Schema reads it, no looser.

``json_int(ge, le)``: a JSON integer within bounds. ``true`` is not 1 and ``"5"`` is not 5
(pydantic's lax mode takes both); ``5.0`` *is* 5, because JSON Schema's ``integer`` is any number
with a zero fractional part, so a schema-valid request is never refused for it.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError


def _json_integer(value: Any) -> Any:
    if isinstance(value, bool | str | bytes):
        raise PydanticCustomError("int_type", "Input should be a JSON integer")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def json_int(ge: int, le: int) -> Any:
    """A JSON integer within [ge, le]. The bounds come before the validator so that pydantic states
    them as ``minimum``/``maximum`` in the JSON schema, also inside ``X | None``."""
    return Annotated[int, Field(ge=ge, le=le), BeforeValidator(_json_integer)]
