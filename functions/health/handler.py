"""Public routes (no JWT authorizer): GET /health, and the API's documentation.

``GET /docs`` is Swagger UI for the whole API (every domain's routes, with a bearer-token "Authorize"
button) and ``GET /openapi.json`` the document behind it: the one ``make openapi`` commits, served as
package data (``functions/health/openapi.json``; docs/openapi.json links to it), so this function
imports no other domain. The Swagger UI assets are the copies Powertools ships, so the page works
without internet access.
"""

from __future__ import annotations

# First: no collector passes while this module imports (functions/common/coldstart.py).
from functions.common import coldstart

# isort: split

from functools import cache
from importlib.resources import files
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common.api import build_resolver
from functions.common.models import DeferredModel
from functions.common.observability import logger

SETTINGS = None  # reads no resource
router = APIGatewayHttpRouter()


class HealthResponse(DeferredModel):
    status: str


@router.get("/health", tags=["health"], summary="Liveness check (no authentication)", security=[])
def health() -> HealthResponse:
    return HealthResponse(status="ok")


@cache
def _openapi_json() -> str:
    return files(__package__ or "functions.health").joinpath("openapi.json").read_text(encoding="utf-8")


@cache
def _swagger_page() -> str:
    # Imported here: Powertools' swagger_ui package builds its OpenAPI models (~0.5x the reference
    # of benchmarks/cold_start.py) on import, and only GET /docs needs it.
    from aws_lambda_powertools.event_handler.openapi.swagger_ui import generate_swagger_html

    assets = files("aws_lambda_powertools.event_handler.openapi.swagger_ui")
    return generate_swagger_html(
        _openapi_json().replace("</", "<\\/"),  # keep the spec from closing the page's <script>
        (assets / "swagger-ui-bundle.min.js").read_text(encoding="utf-8"),
        (assets / "swagger-ui.min.css").read_text(encoding="utf-8"),
        "",
        None,
        persist_authorization=True,
    )


@router.get("/openapi.json", include_in_schema=False)
def openapi_document():
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=_openapi_json())


@router.get("/docs", include_in_schema=False)
def swagger_ui():
    return Response(status_code=200, content_type="text/html; charset=utf-8", body=_swagger_page())


app = build_resolver(router)
coldstart.imported()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
