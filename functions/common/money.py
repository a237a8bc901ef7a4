"""Decimal amounts in JSON answers.

Money and percentages are ``Decimal`` end to end and leave the API as JSON strings, so no client
float ever rounds a dollar. ``str(Decimal)`` would write small amounts in exponent form
(``"4.61E-7"``); ``DecimalString`` always writes plain positional notation (``"0.000000461"``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import PlainSerializer


def plain(amount: Decimal) -> str:
    """Positional notation, never an exponent: ``Decimal("4.61E-7")`` -> ``"0.000000461"``."""
    return format(amount, "f")


DecimalString = Annotated[Decimal, PlainSerializer(plain, return_type=str, when_used="json")]
