"""Generate the OpenAPI document of the whole API from the domain routers.

``python -m functions.openapi`` (``make openapi``) writes it to ``functions/health/openapi.json``, the
package data the health function serves (docs/openapi.json is a link to it); a test fails when the
committed document differs from what the code generates.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer, Server

from functions.common.api import API_DOMAINS, OPENAPI_TITLE, OPENAPI_VERSION, PUBLIC_PATHS, build_resolver
from functions.common.money import raw_numbers
from functions.openapi_contract import complete_contract

DOCUMENT = Path(__file__).resolve().parent / "health" / "openapi.json"


def openapi_document() -> dict:
    modules = [importlib.import_module(f"functions.{d}.handler") for d in API_DOMAINS]
    # A handler serving several routers lists them as ``ROUTERS`` (templates); else its ``router``.
    app = build_resolver(*(r for m in modules for r in getattr(m, "ROUTERS", (m.router,))))
    document = json.loads(
        app.get_openapi_json_schema(
            title=OPENAPI_TITLE,
            version=OPENAPI_VERSION,
            description="REST API of plot-palette: generation jobs, prompt templates, seed data, dashboard.",
            servers=[Server(url="/")],
            # Every route but the public ones needs a Cognito ID token: `Authorization: Bearer <token>`.
            security_schemes={"cognito": HTTPBearer(bearerFormat="JWT", description="Cognito ID token")},
            security=[{"cognito": []}],
        )
    )
    # Routes that read a non-JSON body themselves declare it (``OPENAPI_REQUEST_BODIES``).
    for module in modules:
        for (path, method), body in getattr(module, "OPENAPI_REQUEST_BODIES", {}).items():
            document["paths"][path][method]["requestBody"] = body
    # Public routes opt out of the global requirement (Powertools drops an empty per-route list).
    for path in PUBLIC_PATHS & document["paths"].keys():
        for operation in document["paths"][path].values():
            operation["security"] = []
    _document_bad_requests(document)
    return complete_contract(document)


BAD_REQUEST = (
    "The request cannot be accepted as sent: malformed JSON, a missing field, a wrong type or an "
    "out-of-range value (`details` lists each problem: `loc`, `msg`)"
)
UNSUPPORTED_MEDIA_TYPE = "The body is not JSON: send it with `Content-Type: application/json`"


def _document_bad_requests(document: dict) -> None:
    """Powertools documents request validation as 422 with its own schema; this API answers 400 with
    the error body (functions.common.api), and 415 for a body that is not JSON."""
    error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for operation in (op for item in document["paths"].values() for op in item.values()):
        responses = operation["responses"]
        validation = responses.pop("422", None)
        if validation is None or operation.get("security") == []:
            continue
        own = responses.get("400", {}).get("description")
        description = f"{own}; or {BAD_REQUEST[0].lower()}{BAD_REQUEST[1:]}" if own else BAD_REQUEST
        responses["400"] = {"description": description, "content": error_ref}
        if "requestBody" in operation:
            responses["415"] = {"description": UNSUPPORTED_MEDIA_TYPE, "content": error_ref}
    schemas = document.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def render() -> str:
    # Schema defaults are dumped by pydantic: never as the markers of an answer being written.
    with raw_numbers(False):
        return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DOCUMENT
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render())
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
