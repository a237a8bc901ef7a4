import base64
import json
from decimal import Decimal

import pytest

from functions.common.cursor import decode_cursor, encode_cursor
from functions.common.errors import BadRequestError


def test_cursor_round_trips_dynamodb_keys() -> None:
    key = {"job_id": "j-1", "user_id": "u-1", "created_at": "2026-11-28T15:00:00.000Z", "n": Decimal(7)}
    assert decode_cursor(encode_cursor(key), key.keys()) == {**key, "n": 7}


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not base64 at all!!",
        base64.urlsafe_b64encode(b"{not json").decode(),
        base64.urlsafe_b64encode(json.dumps(["a list"]).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps({"job_id": "j"}).encode()).decode(),  # a key missing
        base64.urlsafe_b64encode(json.dumps({"job_id": "j", "x": {"S": "1"}}).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps({"job_id": True, "x": "1"}).encode()).decode(),
        "A" * 5000,
    ],
)
def test_tampered_cursors_are_bad_requests(cursor: str) -> None:
    with pytest.raises(BadRequestError):
        decode_cursor(cursor, ["job_id", "x"])
