"""The answers every operation can give that no route declares, and the links between operations.

``functions.openapi`` generates the document from the routers; ``complete_contract`` then adds what
comes from the platform rather than from a route, so that a client (or a fuzzer) meets no status
the document does not list:

- **401** on every authenticated operation, with the body API Gateway's JWT authorizer sends
  (``{"message": "Unauthorized"}``) or, for a token the authorizer accepts but the API does not
  (``functions.common.auth``: a refresh token), the API's ``{"error": "Unauthorized"}``;
- **429** on every operation: the stage's throttling (API Gateway answers
  ``{"message": "Too Many Requests"}``) or a per-user quota (``{"error": ...}`` with a
  ``Retry-After`` header, in seconds);
- **400** and **415** on every operation with a body: the body guard (``functions.common.body_guard``)
  refuses bodies that are not JSON (415), nest too deep or hold too-long numbers (400);
- **links** from the operations that create a job or a template to those that read, change or
  delete it, so a client (and the stateful fuzzer) can follow the ids the API hands out.
"""

from __future__ import annotations

import json
from typing import Any

GATEWAY_MESSAGE = "GatewayMessage"
ERROR_BODY = "ErrorBody"

_GATEWAY_SCHEMA = {
    "title": GATEWAY_MESSAGE,
    "description": "The body API Gateway itself answers with (authorizer, throttling).",
    "type": "object",
    "properties": {"message": {"type": "string", "title": "Message"}},
    "required": ["message"],
}
_UNAUTHORIZED = (
    "No bearer token, or one that is invalid, expired or not an ID or access token "
    '(API Gateway answers `{"message": "Unauthorized"}`)'
)
_THROTTLED = (
    "Too many requests: the API's rate limit (API Gateway answers "
    '`{"message": "Too Many Requests"}`) or your quota; retry after `Retry-After` seconds when given'
)
_BAD_BODY = "The body nests deeper than 32 levels or holds a number of more than 100 digits"
_NOT_JSON = "The body is not JSON: send it with `Content-Type: application/json`"

# (producer method, path, status) -> links to the operations that take the id it answers.
_JOB_ID = {"job_id": "$response.body#/job_id"}
_TEMPLATE_ID = {"template_id": "$response.body#/template_id"}
LINKS: dict[tuple[str, str, str], dict[str, tuple[str, str, dict[str, str]]]] = {
    ("post", "/jobs", "201"): {
        "GetJob": ("get", "/jobs/{job_id}", _JOB_ID),
        "CancelJob": ("post", "/jobs/{job_id}/cancel", _JOB_ID),
        "CancelOrDeleteJob": ("delete", "/jobs/{job_id}", _JOB_ID),
        "DownloadJob": ("get", "/jobs/{job_id}/download", _JOB_ID),
        "GetDashboard": ("get", "/dashboard/{job_id}", _JOB_ID),
    },
    ("post", "/templates", "201"): {
        "GetTemplate": ("get", "/templates/{template_id}", _TEMPLATE_ID),
        "UpdateTemplate": ("put", "/templates/{template_id}", _TEMPLATE_ID),
        "DeleteTemplate": ("delete", "/templates/{template_id}", _TEMPLATE_ID),
    },
    ("put", "/templates/{template_id}", "200"): {
        "GetTemplateVersion": (
            "get",
            "/templates/{template_id}",
            {**_TEMPLATE_ID, "version": "$response.body#/version"},
        ),
    },
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _either_body() -> dict[str, Any]:
    return {"application/json": {"schema": {"anyOf": [_ref(GATEWAY_MESSAGE), _ref(ERROR_BODY)]}}}


def _error_body() -> dict[str, Any]:
    return {"application/json": {"schema": _ref(ERROR_BODY)}}


def _operation_ref(method: str, path: str) -> str:
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


def _add_platform_answers(path: str, method: str, operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    if operation.get("security") != []:
        responses["401"] = {"description": _UNAUTHORIZED, "content": _either_body()}
    own = responses.get("429", {}).get("description")
    responses["429"] = {
        "description": f"{own}; or {_THROTTLED[0].lower()}{_THROTTLED[1:]}" if own else _THROTTLED,
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before retrying (quota answers).",
                "required": False,
                "schema": {"type": "integer", "minimum": 0},
            }
        },
        "content": _either_body(),
    }
    if "requestBody" in operation:
        responses.setdefault("415", {"description": _NOT_JSON, "content": _error_body()})
        bad = responses.setdefault("400", {"description": _BAD_BODY, "content": _error_body()})
        if _BAD_BODY not in bad.get("description", ""):
            bad["description"] = f"{bad.get('description', '')}; or {_BAD_BODY[0].lower()}{_BAD_BODY[1:]}"


def _add_links(document: dict[str, Any]) -> None:
    paths = document["paths"]
    for (method, path, status), links in LINKS.items():
        response = paths.get(path, {}).get(method, {}).get("responses", {}).get(status)
        if response is None:
            continue
        response["links"] = {
            name: {"operationRef": _operation_ref(target_method, target_path), "parameters": parameters}
            for name, (target_method, target_path, parameters) in links.items()
            if target_method in paths.get(target_path, {})
        }


def _drop_dangling_schemas(document: dict[str, Any]) -> None:
    """Drop Powertools' validation schemas once nothing references them: its ResponseValidationError
    points at ValidationError, which goes when the 422 answers do, and a dangling $ref makes the
    document invalid."""
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("ResponseValidationError", "HTTPValidationError", "ValidationError"):
        others = {k: v for k, v in schemas.items() if k != name}
        text = json.dumps({"paths": document["paths"], "schemas": others})
        if name in schemas and f'"#/components/schemas/{name}"' not in text:
            schemas.pop(name)


def complete_contract(document: dict[str, Any]) -> dict[str, Any]:
    """Add the platform's answers and the links to a generated document (in place; also returned)."""
    _drop_dangling_schemas(document)
    document.setdefault("components", {}).setdefault("schemas", {})[GATEWAY_MESSAGE] = _GATEWAY_SCHEMA
    for path, item in document["paths"].items():
        for method, operation in item.items():
            _add_platform_answers(path, method, operation)
    _add_links(document)
    return document
