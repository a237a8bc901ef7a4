import json

import pytest

from functions.common.body_guard import (
    MAX_JSON_DEPTH,
    MAX_NUMBER_CHARS,
    body_rejection,
    json_depth,
    json_rejection,
)


def _event(body: str | None, content_type: str | None = "application/json", method: str = "POST") -> dict:
    headers = {"Content-Type": content_type} if content_type is not None else {}
    return {"requestContext": {"http": {"method": method}}, "headers": headers, "body": body}


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("{}", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('{"a": "[[[[[[[[[[{{{{{"}', 1),  # brackets inside a string do not count
        ('{"a": "\\"[[[[", "b": [[]]}', 3),  # nor after an escaped quote
        ("[]" * 5000, 1),
        ("5", 0),
    ],
)
def test_depth_counts_arrays_and_objects_outside_strings(text: str, depth: int) -> None:
    assert json_depth(text) == depth


def test_the_issue_bodies_are_refused_before_parsing() -> None:
    deep = json_rejection("[" * 1000 + "]" * 1000)
    assert deep is not None
    assert deep.status == 400
    assert str(MAX_JSON_DEPTH) in deep.message
    huge = json_rejection('{"filename": "a.json", "x": ' + "1" * 4301 + "}")
    assert huge is not None
    assert huge.status == 400
    assert str(MAX_NUMBER_CHARS) in huge.message


def test_the_limits_themselves_are_allowed() -> None:
    at_depth = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert json_rejection(at_depth) is None
    assert json_rejection("[" + at_depth + "]") is not None
    assert json_rejection(json.dumps({"n": int("9" * MAX_NUMBER_CHARS)})) is None
    assert json_rejection(json.dumps({"long_text": "9" * 10_000, "deep": "[" * 5000})) is None


def test_an_unterminated_string_is_left_to_the_parser_and_scanned_in_linear_time() -> None:
    # Every quote starts an unterminated string: a rescanning regex would take quadratic time.
    assert json_rejection('"\\"' * 200_000) is None


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/xml",
        "application/jsonx",
    ],
)
def test_every_body_that_is_not_json_is_415_even_when_empty(content_type: str) -> None:
    for body in ('{"a": 1}', None):
        rejection = body_rejection(_event(body, content_type))
        assert rejection is not None
        assert rejection.status == 415


@pytest.mark.parametrize("content_type", ["application/json", "Application/JSON; charset=utf-8", None])
def test_json_or_no_content_type_passes(content_type: str | None) -> None:
    assert body_rejection(_event('{"a": [1, 2]}', content_type)) is None


def test_methods_without_a_body_are_not_checked() -> None:
    assert body_rejection(_event("[" * 100, "text/plain", method="GET")) is None


def test_base64_bodies_are_decoded_before_the_check() -> None:
    import base64

    event = _event(base64.b64encode(b"[" * 100 + b"]" * 100).decode())
    event["isBase64Encoded"] = True
    rejection = body_rejection(event)
    assert rejection is not None
    assert rejection.status == 400
