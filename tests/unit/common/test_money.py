"""Decimal amounts leave API answers as exact JSON numbers (functions.common.money)."""

import json
from decimal import Decimal

import pytest
from pydantic import BaseModel

from functions.common.money import DecimalNumber, dumps, plain, raw_numbers

pytestmark = pytest.mark.unit


class _Cost(BaseModel):
    total: DecimalNumber
    label: str = "x"


def test_small_amounts_never_leave_in_exponent_form() -> None:
    assert str(Decimal("4.61E-7")) == "4.61E-7"  # what the default serializer would write
    assert json.dumps(float(Decimal("4.61E-7"))) == "4.61e-07"  # and what a float would
    assert plain(Decimal("4.61E-7")) == "0.000000461"
    with raw_numbers():
        body = _Cost(total=Decimal("4.61E-7")).model_dump(mode="json")
    assert dumps(body) == '{"total":0.000000461,"label":"x"}'


def test_amounts_keep_their_exact_digits_and_stay_decimal_in_python() -> None:
    cost = _Cost(total=Decimal("1000.000001"))
    with raw_numbers():
        assert dumps(cost.model_dump(mode="json")) == '{"total":1000.000001,"label":"x"}'
    assert cost.model_dump()["total"] == Decimal("1000.000001")
    assert plain(Decimal("1E+3")) == "1000"
    assert dumps({"n": Decimal("1E+3"), "z": Decimal("-0.50")}) == '{"n":1000,"z":-0.50}'


def test_outside_an_answer_an_amount_is_a_plain_string_never_a_marker() -> None:
    assert _Cost(total=Decimal("4.61E-7")).model_dump_json() == '{"total":"0.000000461","label":"x"}'
    assert dumps(_Cost(total=Decimal("2.5")).model_dump(mode="json")) == '{"total":"2.5","label":"x"}'


def test_a_client_string_is_never_turned_into_a_number() -> None:
    with raw_numbers():
        body = _Cost(total=Decimal(1), label="\u00a7abc\u00a712").model_dump(mode="json")
    assert json.loads(dumps(body)) == {"total": 1, "label": "\u00a7abc\u00a712"}


def test_the_numbers_parse_back_to_the_same_decimals() -> None:
    amounts = [Decimal("0.000000461"), Decimal("49.519"), Decimal("0.96"), Decimal("123456789.123456")]
    with raw_numbers():
        body = [_Cost(total=a).model_dump(mode="json") for a in amounts]
    parsed = json.loads(dumps(body), parse_float=Decimal)
    assert [item["total"] for item in parsed] == amounts
