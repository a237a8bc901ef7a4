"""Templates API: POST/GET /templates, GET/PUT/DELETE /templates/{template_id}, and the product
routes of ``functions.templates.product_handler`` (dry run, versions, marketplace, fork, export,
import), served by the same Lambda.

Routing and decorators only; the rules are in ``functions.templates.service``.
"""

from __future__ import annotations

# First: no collector passes while this module imports (functions/common/coldstart.py).
from functions.common import coldstart

# isort: split

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common.api import build_resolver, current_caller, error_doc
from functions.common.aws import client
from functions.common.observability import logger
from functions.common.publisher import EventPublisher
from functions.common.settings import (
    EventBusSettings,
    TemplatesTableSettings,
    load_settings,
)
from functions.templates.models import (
    CreateTemplateRequest,
    ModelListResponse,
    TemplateDeleteResponse,
    TemplateListResponse,
    TemplateResponse,
    TemplateWriteResponse,
    UpdateTemplateRequest,
)
from functions.templates.product_handler import OPENAPI_REQUEST_BODIES, DryRunSettings  # noqa: F401 - read by functions/openapi.py
from functions.templates.product_handler import router as product_router
from functions.templates.repository import TemplateRepository
from functions.templates.service import TemplateService


class TemplatesApiSettings(TemplatesTableSettings, EventBusSettings):
    pass


# What the CDK app passes this Lambda: the dry run's settings include every other route's.
SETTINGS = DryRunSettings
router = APIGatewayHttpRouter()


def _service() -> TemplateService:
    settings = load_settings(TemplatesApiSettings)
    dynamodb = client("dynamodb")
    return TemplateService(
        repository=TemplateRepository(dynamodb, settings.templates_table),
        publisher=EventPublisher(client("events"), settings.event_bus_name),
    )


def _json(status: int, body: Any) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


@router.post(
    "/templates",
    tags=["templates"],
    summary="Create a prompt template (version 1)",
    description=(
        "1 to 10 steps with unique identifier-like ids; the whole definition at most 50 KB; every prompt "
        "must compile in Jinja2's sandbox (a syntax error is a 400 naming the step and line). "
        "`schema_requirements` are the seed fields the prompts read, as sorted dotted paths; "
        "`steps.<id>.output` must name an earlier step. Emits `Template Created`."
    ),
    responses={201: {"description": "Created"}, 400: error_doc("The definition breaks a rule")},
)
def create_template(request: CreateTemplateRequest) -> Response[TemplateWriteResponse]:
    caller = current_caller(router)
    return _json(201, _service().create(caller.user_id, request))


@router.get(
    "/templates",
    tags=["templates"],
    summary="Your templates (latest versions, newest update first), then others' public ones",
    description=(
        "`is_public=true`: every public template (yours too); `is_public=false`: your private ones; "
        "absent: yours, then others' public ones. Each item has the latest version's "
        "`schema_requirements`."
    ),
    responses={200: {"description": "A page"}, 400: error_doc("Invalid cursor")},
)
def list_templates(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    is_public: Annotated[bool | None, Query(description="Filter by visibility.")] = None,
    last_key: Annotated[
        str | None, Query(max_length=2048, description="Cursor from the previous page.")
    ] = None,
) -> TemplateListResponse:
    caller = current_caller(router)
    return _service().list(caller.user_id, limit, last_key, is_public)


@router.get(
    "/templates/<template_id>",
    tags=["templates"],
    summary="One version of a template (the latest by default)",
    responses={
        200: {"description": "The version"},
        403: error_doc("Private and not yours"),
        404: error_doc("No such template or version"),
    },
)
def get_template(
    template_id: str,
    version: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
) -> TemplateResponse:
    caller = current_caller(router)
    template = _service().get(caller.user_id, template_id, version)
    return TemplateResponse.of(template, caller.user_id)


@router.put(
    "/templates/<template_id>",
    tags=["templates"],
    summary="Write a new version of your template",
    description=(
        "Writes version latest+1 (a conditional put): concurrent updates each get their own version. "
        "Name, description and visibility default to the latest version's. Emits `Template Version Created`."
    ),
    responses={
        200: {"description": "The new version"},
        400: error_doc("The definition breaks a rule"),
        403: error_doc("Not yours"),
        404: error_doc("No such template"),
        409: error_doc("Too many concurrent updates; retry"),
    },
)
def update_template(template_id: str, request: UpdateTemplateRequest) -> TemplateWriteResponse:
    caller = current_caller(router)
    return _service().update(caller.user_id, template_id, request)


@router.delete(
    "/templates/<template_id>",
    tags=["templates"],
    summary="Delete your template and every version of it",
    description="A 409 while any job references the template. Emits `Template Deleted`.",
    responses={
        200: {"description": "Deleted"},
        403: error_doc("Not yours"),
        404: error_doc("No such template"),
        409: error_doc("Used by a job"),
    },
)
def delete_template(template_id: str) -> TemplateDeleteResponse:
    caller = current_caller(router)
    return _service().delete(caller.user_id, template_id)


@router.get(
    "/models",
    tags=["templates"],
    summary="The models a template step may name, with prices per million tokens",
    description=(
        "A step's `model` is one of these aliases (or Bedrock ids, or a tier name), its `model_tier` "
        "one of the tiers; `POST`/`PUT /templates` refuse any other name with a 400."
    ),
    responses={200: {"description": "The catalogue"}, 401: error_doc("No JWT claims")},
)
def list_models() -> ModelListResponse:
    current_caller(router)
    return ModelListResponse.catalogue()


# Both routers are served (and documented, functions/openapi.py) by this one Lambda.
ROUTERS = (router, product_router)
app = build_resolver(*ROUTERS)
coldstart.imported()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
