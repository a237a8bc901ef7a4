"""Every route that takes a JSON body refuses hostile bodies with a clear 4xx and writes nothing.

The body routes are read from the OpenAPI document (every operation with a ``requestBody``), so a
new body route is covered without touching this file.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest

from functions.common.body_guard import _OWN_MEDIA_TYPES
from functions.openapi import openapi_document
from tests.integration.jobs.support import JOBS_TABLE, TEMPLATES_TABLE
from tests.support.http import ApiClient


def _body_routes() -> list[tuple[str, str, str]]:
    routes = []
    for path, operations in openapi_document()["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                module = "functions." + operation["tags"][0].replace("-", "_") + ".handler"
                routes.append((method.upper(), path.replace("{template_id}", "t-1"), module))
    return sorted(routes)


BODY_ROUTES = _body_routes()
DEEP = "[" * 1000 + "]" * 1000
HUGE_NUMBER = '{"filename": "a.json", "x": ' + "1" * 4301 + "}"
MULTIPART = (
    '--XyZ\r\nContent-Disposition: form-data; name="template_id"\r\n\r\nt\r\n'
    '--XyZ\r\nContent-Disposition: form-data; name="num_records"\r\n\r\n1\r\n--XyZ--\r\n'
)


def _call(route: tuple[str, str, str], **kwargs: Any):
    method, path, module = route
    handler = importlib.import_module(module).lambda_handler
    return ApiClient(handler).request(method, path, **kwargs)


def _rows(aws: Any) -> int:
    ddb = aws.client("dynamodb")
    return sum(ddb.scan(TableName=table)["Count"] for table in (JOBS_TABLE, TEMPLATES_TABLE))


def test_the_body_routes_are_found() -> None:
    assert {(m, p) for m, p, _ in BODY_ROUTES} >= {
        ("POST", "/jobs"),
        ("POST", "/templates"),
        ("PUT", "/templates/t-1"),
        ("POST", "/seed-data/upload"),
        ("POST", "/seed-data/validate"),
    }


@pytest.mark.parametrize("route", BODY_ROUTES, ids=lambda r: f"{r[0]} {r[1]}")
@pytest.mark.parametrize(
    ("body", "fragment"), [(DEEP, "deeper than 32 levels"), (HUGE_NUMBER, "more than 100 digits")]
)
def test_deep_nesting_and_huge_numbers_are_400_on_every_body_route(
    aws, route: tuple[str, str, str], body: str, fragment: str
) -> None:
    answer = _call(route, raw_body=body)
    assert answer.status == 400, answer.body
    assert fragment in answer.body["error"]
    assert _rows(aws) == 0


@pytest.mark.parametrize("route", BODY_ROUTES, ids=lambda r: f"{r[0]} {r[1]}")
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", MULTIPART),  # no boundary: Powertools' parser raised (500)
        ("multipart/form-data; boundary=XyZ", MULTIPART),  # a well-formed form was accepted (201)
        ("application/x-www-form-urlencoded", "template_id=t&num_records=1"),
        ("text/plain", json.dumps({"filename": "a.json"})),
    ],
)
def test_every_body_that_is_not_json_is_415_and_changes_nothing(
    aws, route: tuple[str, str, str], content_type: str, body: str
) -> None:
    if content_type in _OWN_MEDIA_TYPES.get(route[1], ()):
        pytest.skip(f"{route[1]} takes {content_type} itself")
    answer = _call(route, raw_body=body, headers={"Content-Type": content_type})
    assert answer.status == 415, answer.body
    assert answer.body == {"error": "Unsupported content type: send JSON with Content-Type: application/json"}
    assert _rows(aws) == 0


@pytest.mark.parametrize("route", BODY_ROUTES, ids=lambda r: f"{r[0]} {r[1]}")
def test_an_anonymous_caller_learns_it_is_unauthenticated_first(aws, route: tuple[str, str, str]) -> None:
    answer = _call(route, user=None, raw_body=DEEP, headers={"Content-Type": "multipart/form-data"})
    assert answer.status == 401
    assert answer.body == {"error": "Unauthorized"}
