"""Template product routes: dry run, versions, marketplace, fork, YAML export and import.

Routing and decorators only; the rules are in ``functions.templates.product_service`` and
``functions.templates.dry_run``. The templates Lambda serves these with the routes of
``functions.templates.handler``. ``/templates/marketplace`` and ``/templates/import`` are static
paths: Powertools matches static routes before dynamic ones, and API Gateway prefers a literal
path segment to ``{template_id}``, so neither is ever taken for a template id.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Literal

import boto3
from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from botocore.config import Config
from pydantic import Field

from functions.common.api import api_responses, current_caller
from functions.common.aws import client
from functions.common.body_guard import accept_media_types
from functions.common.errors import BadRequestError, DomainError
from functions.common.publisher import EventPublisher
from functions.common.render_limits import DEFAULT_MAX_OUTPUT_CHARS, DEFAULT_MAX_SECONDS
from functions.common.retry import RetryPolicy
from functions.common.settings import (
    BucketSettings,
    EventBusSettings,
    IdempotencyTableSettings,
    TemplatesTableSettings,
    load_settings,
)
from functions.templates.models import TemplateWriteResponse
from functions.templates.product_models import (
    IMPORT_CONTENT_TYPES,
    MAX_IMPORT_BYTES,
    YAML_CONTENT_TYPE,
    DryRunRequest,
    DryRunResponse,
    ForkRequest,
    ForkResponse,
    MarketplaceResponse,
    MarketplaceSort,
    TemplateVersionsResponse,
)
from functions.templates.repository import TemplateRepository
from functions.templates.service import TemplateService

if TYPE_CHECKING:
    # The dry run (Jinja2, the worker's renderer and model providers, the seed reader, the rate
    # limiter) and the product routes' service are imported by the routes that use them: the other
    # routes' cold start does not pay for them (benchmarks/cold_start.py).
    from functions.common.rate_limit import RateLimiter
    from functions.templates.dry_run import DryRunService
    from functions.templates.product_service import ProductService
    from functions.worker.providers import ModelProvider

DRY_RUN_SCOPE = "templates-test"
# A throttled model call is not waited out: the dry run answers 503 within its time budget.
NO_RETRY = RetryPolicy(attempts=1)


class UnsupportedMediaTypeError(DomainError):
    status_code = 415


class ProductApiSettings(TemplatesTableSettings, EventBusSettings):
    pass


class DryRunSettings(ProductApiSettings, BucketSettings, IdempotencyTableSettings):
    """The dry run renders and calls models as the worker does, so it reads the worker's settings
    (same variables, same defaults), plus its own rate limit."""

    model_provider: Literal["bedrock", "offline"] = Field(validation_alias="MODEL_PROVIDER")
    bedrock_max_tokens: int = Field(default=1024, ge=1, validation_alias="BEDROCK_MAX_TOKENS")
    prompt_max_chars: int = Field(
        default=DEFAULT_MAX_OUTPUT_CHARS, ge=1000, validation_alias="PROMPT_MAX_CHARS"
    )
    prompt_render_seconds: float = Field(
        default=DEFAULT_MAX_SECONDS, gt=0, validation_alias="PROMPT_RENDER_SECONDS"
    )
    # What the estimate's duration divides by: records in flight per worker, and the lifecycle's
    # partitioning (the stack passes its context values partition_records / partition_concurrency).
    record_concurrency: int = Field(default=16, ge=1, le=256, validation_alias="MODEL_MAX_CONCURRENCY")
    partition_records: int = Field(default=1000, ge=1, validation_alias="PARTITION_RECORDS")
    partition_concurrency: int = Field(default=10, ge=1, le=40, validation_alias="PARTITION_CONCURRENCY")
    dry_runs_per_minute: int = Field(default=10, ge=1, validation_alias="DRY_RUNS_PER_MINUTE")
    dry_runs_per_day: int = Field(default=200, ge=1, validation_alias="DRY_RUNS_PER_DAY")


router = APIGatewayHttpRouter()


def _templates(settings: ProductApiSettings) -> TemplateService:
    return TemplateService(
        repository=TemplateRepository(client("dynamodb"), settings.templates_table),
        publisher=EventPublisher(client("events"), settings.event_bus_name),
    )


def _service() -> ProductService:
    # The versions, marketplace, fork, export and import routes' service and reads are imported by
    # those routes only: the template CRUD routes' cold start skips them.
    from functions.templates.product_repository import ProductRepository
    from functions.templates.product_service import ProductService

    settings = load_settings(ProductApiSettings)
    return ProductService(
        templates=_templates(settings),
        heads=TemplateRepository(client("dynamodb"), settings.templates_table),
        reads=ProductRepository(client("dynamodb"), settings.templates_table),
    )


@cache
def _bedrock_client(read_timeout: int) -> Any:
    # One attempt that gives up with the dry run's remaining time (one client per whole second).
    config = Config(
        connect_timeout=min(3, read_timeout),
        read_timeout=read_timeout,
        retries={"mode": "standard", "max_attempts": 1},
    )
    return boto3.client("bedrock-runtime", config=config)


def _providers(settings: DryRunSettings) -> Callable[[float], ModelProvider]:
    from functions.worker.providers import BedrockProvider, OfflineProvider

    if settings.model_provider == "offline":
        offline = OfflineProvider()
        return lambda _seconds: offline

    def bedrock(seconds: float) -> ModelProvider:
        # No retry after throttling: a dry run answers 503 rather than wait past its budget.
        return BedrockProvider(
            _bedrock_client(max(1, int(seconds))), max_tokens=settings.bedrock_max_tokens, retry=NO_RETRY
        )

    return bedrock


def dry_run_limiter(settings: DryRunSettings) -> RateLimiter:
    from functions.common.rate_limit import RateLimiter, Window  # the dry run's only (see TYPE_CHECKING)

    return RateLimiter(
        client("dynamodb"),
        settings.idempotency_table,
        scope=DRY_RUN_SCOPE,
        windows=[Window(60, settings.dry_runs_per_minute), Window(86_400, settings.dry_runs_per_day)],
    )


def _dry_run() -> DryRunService:
    from functions.templates.dry_run import DryRunService, S3SeedFiles, WorkerShape
    from functions.worker.rendering import PromptRenderer, RenderLimits

    settings = load_settings(DryRunSettings)
    return DryRunService(
        templates=_templates(settings),
        seeds=S3SeedFiles(client("s3"), settings.bucket_name),
        provider=_providers(settings),
        renderer=PromptRenderer(RenderLimits(settings.prompt_max_chars, settings.prompt_render_seconds)),
        limiter=dry_run_limiter(settings),
        worker=WorkerShape(
            record_concurrency=settings.record_concurrency,
            partition_records=settings.partition_records,
            partition_concurrency=settings.partition_concurrency,
            provider_name=settings.model_provider,
        ),
    )


_LIMIT = Annotated[int, Query(ge=1, le=100)]
_CURSOR = Annotated[str | None, Query(max_length=2048, description="Cursor from the previous page.")]


@router.get(
    "/templates/marketplace",
    tags=["templates"],
    summary="Public templates: search and sort the catalogue",
    description=(
        "Every template whose latest version is public (yours included), with that version. `q` "
        "matches a substring of the name or description, case-insensitively. `sort`: `recent` (last "
        "updated first), `popular` (most jobs + forks first), `name` (A to Z). Each sort is one "
        "DynamoDB index, read with Queries (never a Scan): a request makes at most 4 of them, so "
        "with `q` a page may hold fewer than `limit` templates and still carry a cursor."
    ),
    responses=api_responses((200, "A page of the catalogue"), e400="Invalid cursor"),
)
def marketplace(
    q: Annotated[str | None, Query(max_length=100, description="Case-insensitive substring.")] = None,
    sort: Annotated[MarketplaceSort, Query()] = MarketplaceSort.RECENT,
    limit: _LIMIT = 20,
    last_key: _CURSOR = None,
) -> MarketplaceResponse:
    caller = current_caller(router)
    return _service().marketplace(caller.user_id, q, sort, limit, last_key)


# The import takes YAML: the API's body guard leaves these media types to this route.
accept_media_types("/templates/import", IMPORT_CONTENT_TYPES)


@router.post(
    "/templates/import",
    tags=["templates"],
    summary="Create a template of yours from an exported YAML document",
    description=(
        "The body is the document `GET /templates/{id}/export` writes (`name`, `description`, "
        "`steps`, `schema_requirements`; optional `is_public`, default false), sent as "
        f"`Content-Type: {YAML_CONTENT_TYPE}` (JSON works too), at most {MAX_IMPORT_BYTES // 1024} KB. "
        "Parsed with a safe loader (no anchors/aliases, no duplicate keys) and validated exactly as "
        "`POST /templates`; `schema_requirements` is computed again from the prompts. A YAML error "
        "is a 400 naming its line. Emits `Template Imported`."
    ),
    responses=api_responses(
        (201, "Imported as version 1"),
        e400="Not valid YAML (with its line) or not a valid template",
        e413="The document is too large",
        e415="Not a YAML body",
    ),
)
def import_template() -> Response[TemplateWriteResponse]:
    caller = current_caller(router)
    event = router.current_event
    content_type = (event.headers.get("content-type") or YAML_CONTENT_TYPE).split(";")[0].strip().lower()
    if content_type not in IMPORT_CONTENT_TYPES:
        raise UnsupportedMediaTypeError(
            f"Send the template as YAML with Content-Type: {YAML_CONTENT_TYPE}, not {content_type}"
        )
    # The bytes as sent (API Gateway base64-encodes bodies it deems binary); decoding is the
    # parser's job, so a non-UTF-8 body is a 400, not a 500.
    body = event.body or ""
    raw = base64.b64decode(body, validate=False) if event.is_base64_encoded else body.encode()
    written = _service().import_document(caller.user_id, raw)
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=written)


@router.post(
    "/templates/<template_id>/test",
    tags=["templates"],
    summary="Dry run: one seed record through a template, with its cost and a job estimate",
    description=(
        "Renders every step of a version (latest by default) for one seed record (inline "
        "`seed_record`, or record `record_index` of one of your uploads) in the worker's sandbox, "
        "with the worker's limits, and calls each step's model (offline locally, Bedrock in AWS) "
        "unless `call_model` is false. Answers the prompts, outputs, tokens and cost of that record, "
        "and an estimate for a job of `num_records` with its assumptions. A render error is a 400 "
        "naming the step and line. Rate-limited per user: 10 a minute and 200 a day by default "
        "(`DRY_RUNS_PER_MINUTE`, `DRY_RUNS_PER_DAY`); past it, 429 with `Retry-After`. Writes "
        "nothing but the rate-limit counter, emits no event, bills no job."
    ),
    responses=api_responses(
        (200, "The dry run"),
        e400="A step failed to render (step and line) or the seed record cannot be read",
        e403="Another user's private template, or a seed file that is not yours",
        e404="No such template, version or seed file",
        e429="Rate limit reached (see Retry-After)",
        e503="The model service cannot answer now",
    ),
)
def dry_run(template_id: str, request: DryRunRequest) -> DryRunResponse:
    caller = current_caller(router)
    return _dry_run().run(caller.user_id, template_id, request)


@router.get(
    "/templates/<template_id>/versions",
    tags=["templates"],
    summary="Every version of a template, newest first",
    description=(
        "Yours: every version. Another user's public template: its public versions. Another user's "
        "private template: 403."
    ),
    responses=api_responses(
        (200, "A page of versions"),
        e400="Invalid cursor",
        e403="Private and not yours",
        e404="No such template",
    ),
)
def list_versions(template_id: str, limit: _LIMIT = 20, last_key: _CURSOR = None) -> TemplateVersionsResponse:
    caller = current_caller(router)
    return _service().versions(caller.user_id, template_id, limit, last_key)


@router.post(
    "/templates/<template_id>/fork",
    tags=["templates"],
    summary="Copy a public template (or your own) into a new template of yours",
    description=(
        "Version 1 of a new template of yours with the source version's steps, recording "
        "`forked_from`. The body is optional: `version` (default latest), `name` and `description` "
        "(default the source's), `is_public` (default false). Counts once toward the source's "
        "popularity. Emits `Template Forked`."
    ),
    responses=api_responses(
        (201, "Forked"),
        e403="Another user's private template",
        e404="No such template or version",
    ),
)
def fork_template(
    template_id: str, request: Annotated[ForkRequest | None, Body()] = None
) -> Response[ForkResponse]:
    caller = current_caller(router)
    # The schema allows an object or null; Powertools would read any other JSON (an array) as none.
    if router.current_event.body and not isinstance(router.current_event.json_body, dict | None):
        raise BadRequestError("The body must be a JSON object")
    forked = _service().fork(caller.user_id, template_id, request or ForkRequest())
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=forked)


_EXPORT_EXAMPLE = (
    "# plot-palette template 3f6c2a1e-8b7d-4c5e-9f10-2a3b4c5d6e7f version 2, exported "
    "2026-11-30T12:05:00.000Z\nname: Author bios\ndescription: One bio per author\nsteps:\n- id: bio\n"
    "  prompt: |\n    Write a short bio of {{ author.name }}.\n    Mention {{ author.genre }}.\n"
    "  model_tier: tier-1\nschema_requirements:\n- author.genre\n- author.name\n"
)


# The YAML document (export's answer, import's body) as what it parses to: a client reading
# `application/yaml` sees this mapping, not a string. Its size limit (MAX_IMPORT_BYTES) is the 413.
_YAML_DOCUMENT: dict[str, Any] = {
    "type": "object",
    "required": ["name", "description", "steps"],
    "properties": {
        "name": {"type": "string"},
        "description": {"type": ["string", "null"]},
        "is_public": {"type": "boolean"},
        "steps": {"type": "array", "items": {"type": "object"}},
        "schema_requirements": {"type": "array", "items": {"type": "string"}},
    },
}


@router.get(
    "/templates/<template_id>/export",
    tags=["templates"],
    summary="One version of a template as a YAML document",
    description=(
        "`name`, `description`, `steps` and `schema_requirements` of a version (latest by default), "
        "as `application/yaml`, ready for `POST /templates/import` in any deployment."
    ),
    responses={
        **api_responses((200, ""), e403="Private and not yours", e404="No such template or version"),
        200: {
            "description": "The YAML document",
            "content": {
                YAML_CONTENT_TYPE: {
                    "schema": _YAML_DOCUMENT,
                    "examples": {"bios": {"value": _EXPORT_EXAMPLE}},
                }
            },
        },
    },
)
def export_template(
    template_id: str, version: Annotated[int | None, Query(ge=1, le=1_000_000)] = None
) -> Response[str]:
    caller = current_caller(router)
    template, document = _service().export(caller.user_id, template_id, version)
    filename = f"template-{template.template_id}-v{template.version}.yaml"
    return Response(
        status_code=200,
        content_type=YAML_CONTENT_TYPE,
        body=document,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# The import route reads its body itself (YAML), so Powertools cannot describe it: this is its
# requestBody in the OpenAPI document (functions/openapi.py applies it).
OPENAPI_REQUEST_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("/templates/import", "post"): {
        "required": True,
        "content": {
            YAML_CONTENT_TYPE: {
                "schema": _YAML_DOCUMENT,
                "examples": {"bios": {"value": _EXPORT_EXAMPLE}},
            }
        },
    }
}
