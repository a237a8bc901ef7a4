from decimal import Decimal

from pydantic import BaseModel

from functions.common.money import DecimalString, plain


class _Cost(BaseModel):
    total: DecimalString


def test_small_amounts_never_leave_in_exponent_form() -> None:
    assert str(Decimal("4.61E-7")) == "4.61E-7"  # what the default serializer would write
    assert plain(Decimal("4.61E-7")) == "0.000000461"
    assert _Cost(total=Decimal("4.61E-7")).model_dump_json() == '{"total":"0.000000461"}'


def test_amounts_keep_their_exact_digits_and_stay_decimal_in_python() -> None:
    cost = _Cost(total=Decimal("1000.000001"))
    assert cost.model_dump_json() == '{"total":"1000.000001"}'
    assert cost.model_dump()["total"] == Decimal("1000.000001")
    assert plain(Decimal("1E+3")) == "1000"
