"""Drive an API Lambda handler in-process with API Gateway HTTP API (payload 2.0) events.

The event is tests/events/apigw_http_v2.json with the method, path, query, headers, body and the
caller's JWT claims filled in, exactly as API Gateway's JWT authorizer would pass them.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from tests.conftest import load_event


@dataclass
class ApiResponse:
    status: int
    body: Any
    headers: dict[str, str]
    text: str = ""  # the body exactly as sent


class LambdaContext:
    function_name = "test-function"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test-function"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def build_event(
    method: str,
    path: str,
    *,
    user: str | None = "user-1",
    body: Any = None,
    query: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    raw_body: str | None = None,
) -> dict[str, Any]:
    event = copy.deepcopy(load_event("apigw_http_v2"))
    event["rawPath"] = path
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["http"]["path"] = path
    event["requestContext"]["requestId"] = str(uuid.uuid4())
    event["routeKey"] = f"{method} {path}"
    if query:
        clean = {k: str(v) for k, v in query.items() if v is not None}
        event["rawQueryString"] = urlencode(clean)
        event["queryStringParameters"] = clean
    if headers:
        event["headers"].update({k.lower(): v for k, v in headers.items()})
    if raw_body is not None:
        event["body"] = raw_body
    elif body is not None:
        event["body"] = json.dumps(body)
    if user is None:
        del event["requestContext"]["authorizer"]
    else:
        event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = user
    return event


class ApiClient:
    """Calls one Lambda handler the way API Gateway would; returns status, parsed JSON body, headers."""

    def __init__(self, handler: Callable[[dict[str, Any], Any], dict[str, Any]]) -> None:
        self._handler = handler

    def request(self, method: str, path: str, **kwargs: Any) -> ApiResponse:
        answer = self._handler(build_event(method, path, **kwargs), LambdaContext())
        raw = answer.get("body") or ""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw
        return ApiResponse(
            status=answer["statusCode"], body=body, headers=answer.get("headers") or {}, text=raw
        )

    def get(self, path: str, **kwargs: Any) -> ApiResponse:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> ApiResponse:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> ApiResponse:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> ApiResponse:
        return self.request("DELETE", path, **kwargs)
