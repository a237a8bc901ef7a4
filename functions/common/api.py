"""The HTTP side shared by every API Lambda: the resolver, the error mapping and the caller.

Every domain handler builds its resolver with ``build_resolver()`` so all of them answer errors the
same way: ``{"error": "..."}`` (validation errors add ``details``) with the status the typed error
carries. Anything unexpected is logged with its stack and answered as a bare 500 without internals.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common.auth import Caller, caller_from_event
from functions.common.body_guard import UNSUPPORTED_MEDIA_TYPE_MESSAGE, BodyRejection, body_rejection
from functions.common.errors import DomainError, UnauthorizedError
from functions.common.models import DeferredModel
from functions.common.money import dumps, raw_numbers
from functions.common.observability import logger

OPENAPI_TITLE = "plot-palette API"
OPENAPI_VERSION = "1.0.0"
# Routes served without the JWT authorizer (the CDK app attaches it to every other route).
PUBLIC_PATHS = frozenset({"/health", "/docs", "/openapi.json"})
# The domains serving the HTTP API. Each ``functions.<domain>.handler`` exposes its resolver as
# ``app`` and the settings class it loads as ``SETTINGS``; the CDK app deploys exactly the routes
# the resolver serves, so a new route is declared in its router and nowhere else.
API_DOMAINS = ("health", "jobs", "templates", "seed_data", "dashboard")


class ErrorBody(DeferredModel):
    """Every error answer: ``{"error": "..."}``; validation errors add ``details``."""

    error: str
    details: Any | None = None


def error_doc(description: str) -> OpenAPIResponse:
    """An OpenAPI ``responses`` entry for an error status, documented with the error body."""
    return {"description": description, "content": {"application/json": {"model": ErrorBody}}}


def api_responses(success: tuple[int, str], **errors: str) -> dict[int, OpenAPIResponse]:
    """OpenAPI ``responses``: the success code (its schema comes from the route's return type) and
    error codes with the error body, e.g. ``api_responses((200, "The job"), e404="Job not found")``."""
    answer: dict[int, OpenAPIResponse] = {success[0]: {"description": success[1]}}
    for code, text in errors.items():
        answer[int(code[1:])] = error_doc(text)
    return answer


def error_response(
    status: int, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> Response:
    body: dict[str, Any] = {"error": message}
    if details is not None:
        body["details"] = details
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=body, headers=headers or None
    )


def _unsupported_media_type() -> Response:
    return error_response(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, UNSUPPORTED_MEDIA_TYPE_MESSAGE)


def _refused_body(event: Mapping[str, Any], rejection: BodyRejection) -> dict[str, Any]:
    """The HTTP API answer to a body refused before parsing (401 first for an anonymous caller)."""
    status, message = rejection.status, rejection.message
    if event.get("rawPath") not in PUBLIC_PATHS:
        try:
            caller_from_event(dict(event))
        except UnauthorizedError as unauthorized:
            status, message = unauthorized.status_code, unauthorized.message
    logger.info("Request body refused before parsing", extra={"status": status, "reason": message})
    return {
        "statusCode": int(status),
        "headers": {"Content-Type": content_types.APPLICATION_JSON},
        "body": json.dumps({"error": message}),
        "isBase64Encoded": False,
        "cookies": [],
    }


class JsonApiResolver(APIGatewayHttpResolver):
    """Powertools' HTTP API resolver that refuses a body before parsing it when it is not JSON
    (415), nests too deep or holds a too-long number (400): see ``functions.common.body_guard``."""

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        rejection = body_rejection(dict(event))
        if rejection is not None:
            return _refused_body(event, rejection)
        return super().resolve(event, context)


def served_routes(app: APIGatewayHttpResolver) -> list[tuple[str, str]]:
    """``(method, path)`` of every route ``app`` serves, the path in API Gateway's ``{param}`` form."""
    return sorted(
        {(route.method, route.openapi_path) for route in [*app._static_routes, *app._dynamic_routes]}
    )


def _unauthenticated(app: APIGatewayHttpResolver) -> Response | None:
    # Powertools validates the request before the route runs; an anonymous caller must still
    # learn that it is unauthenticated, not what is wrong with its input.
    if app.current_event.path in PUBLIC_PATHS:
        return None
    try:
        caller_from_event(app.current_event.raw_event)
    except UnauthorizedError as unauthorized:
        return error_response(unauthorized.status_code, unauthorized.message)
    return None


def _invalid_request(app: APIGatewayHttpResolver, error: RequestValidationError) -> Response:
    if (answer := _unauthenticated(app)) is not None:
        return answer
    # Powertools parses form bodies itself; every body here is JSON, so say that plainly
    # (`curl -d` sends application/x-www-form-urlencoded unless told otherwise).
    content_type = app.current_event.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        return _unsupported_media_type()
    # Location and message only: never echo the input or pydantic internals back.
    details = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in error.errors()
    ]
    # 400, as the spec answers missing fields and malformed JSON (Powertools' default is 422).
    return error_response(HTTPStatus.BAD_REQUEST, "Request validation failed", details)


def _exact_numbers(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
    # Money and percentages leave as exact JSON numbers (functions.common.money).
    with raw_numbers():
        return next_middleware(app)


def build_resolver(*routers: APIGatewayHttpRouter) -> APIGatewayHttpResolver:
    """A validating HTTP API resolver with the shared error mapping and the given domain routers."""
    app = JsonApiResolver(enable_validation=True, serializer=dumps)
    app.use(middlewares=[_exact_numbers])
    for router in routers:
        app.include_router(router)

    @app.exception_handler(DomainError)
    def _domain_error(error: DomainError) -> Response:
        # Typed headers ride on the error (e.g. Retry-After of a TooManyRequestsError).
        return error_response(error.status_code, error.message, error.details, error.headers)

    @app.exception_handler(RequestValidationError)
    def _validation_error(error: RequestValidationError) -> Response:
        return _invalid_request(app, error)

    @app.exception_handler(RequestUnsupportedContentType)
    def _unsupported_content_type(_: RequestUnsupportedContentType) -> Response:
        return _unauthenticated(app) or _unsupported_media_type()

    @app.not_found
    def _not_found(_: Exception) -> Response:
        return error_response(HTTPStatus.NOT_FOUND, "Not found")

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response:
        logger.exception("Unhandled error")
        return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, "Internal server error")

    return app


def current_caller(router: APIGatewayHttpRouter | APIGatewayHttpResolver) -> Caller:
    """The authenticated caller of the request being handled (401 without JWT claims)."""
    return caller_from_event(router.current_event.raw_event)
