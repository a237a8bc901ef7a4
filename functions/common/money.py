"""Decimal amounts (money, budgets, percentages) in JSON answers: bare JSON numbers, exact.

Amounts are ``Decimal`` end to end. An API answer writes them as JSON numbers with exactly the
Decimal's digits in positional notation: ``0.000000461``, never ``4.61e-07`` (what a float would
write) nor ``0.00000046099999`` (float noise). Neither pydantic's JSON mode nor ``json.dumps`` can
write a Decimal as a bare number, so it takes two steps:

1. While an API request is being answered (``raw_numbers()``, entered by a middleware of every
   resolver), a ``DecimalNumber`` field dumps as a *marker*: a string holding the digits behind a
   random per-process token that no client can know or forge.
2. The resolver's serializer (``dumps``) writes the body with ``json.dumps`` and replaces each
   quoted marker with its bare digits. A ``Decimal`` left in a plain dict body is written the same way.

Outside an answer (tests, logs, anything else that dumps these models) a ``DecimalNumber`` is a plain
positional string (``"0.000000461"``), so a marker never leaks into stored data.

Events on the bus carry no amounts (their schemas are in docs/events/); should one ever carry money,
keep it a positional string there: consumers' JSON parsers read numbers as binary floats.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from decimal import Decimal
from typing import Annotated, Any

from aws_lambda_powertools.shared.json_encoder import Encoder
from pydantic import PlainSerializer, WithJsonSchema

_TOKEN = secrets.token_hex(16)
_MARKER = f"\u00a7{_TOKEN}\u00a7"
# The marker as json.dumps writes it (ensure_ascii escapes the section signs).
_MARKED = re.compile(r'"\\u00a7' + _TOKEN + r'\\u00a7(-?[0-9]+(?:\.[0-9]+)?)"')
_RAW_NUMBERS: ContextVar[bool] = ContextVar("raw_numbers", default=False)


def plain(amount: Decimal) -> str:
    """Positional notation, never an exponent: ``Decimal("4.61E-7")`` -> ``"0.000000461"``."""
    return format(amount, "f")


def _marked(amount: Decimal) -> str:
    return _MARKER + plain(amount)


def _json_number(amount: Decimal) -> str:
    return _marked(amount) if _RAW_NUMBERS.get() else plain(amount)


@contextmanager
def raw_numbers(enabled: bool = True) -> Iterator[None]:
    """Within: ``DecimalNumber`` fields dump as markers that ``dumps`` writes as bare numbers
    (``enabled=False``: as plain strings again, e.g. for a document rendered during a request)."""
    token = _RAW_NUMBERS.set(enabled)
    try:
        yield
    finally:
        _RAW_NUMBERS.reset(token)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal) and value.is_finite():
        return _marked(value)
    return Encoder().default(value)


def dumps(body: Any) -> str:
    """Compact JSON with every marked or raw ``Decimal`` as a bare, exact JSON number."""
    return _MARKED.sub(r"\1", json.dumps(body, separators=(",", ":"), default=_default))


DecimalNumber = Annotated[
    Decimal,
    PlainSerializer(_json_number, return_type=str, when_used="json"),
    WithJsonSchema({"type": "number"}),
]
"""A Decimal that API answers write as an exact JSON number (OpenAPI: ``number``)."""
