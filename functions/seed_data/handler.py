"""Seed-data API: POST /seed-data/upload, POST /seed-data/validate.

Routing and decorators only; the rules are in ``functions.seed_data.service``.
"""

from __future__ import annotations

# First: no collector passes while this module imports (functions/common/coldstart.py).
from functions.common import coldstart

# isort: split

from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common.api import build_resolver, current_caller, error_doc
from functions.common.aws import client, s3_presign_client
from functions.common.observability import logger
from functions.common.settings import BucketSettings, TemplatesTableSettings, UploadSettings, load_settings
from functions.seed_data.models import (
    UploadRequest,
    UploadResponse,
    ValidateRequest,
    ValidationFailure,
    ValidationSuccess,
)
from functions.seed_data.repository import SeedStore
from functions.seed_data.service import SeedDataService
from functions.templates.repository import TemplateRepository


class SeedDataApiSettings(BucketSettings, TemplatesTableSettings, UploadSettings):
    pass


SETTINGS = SeedDataApiSettings
router = APIGatewayHttpRouter()


def _service() -> SeedDataService:
    settings = load_settings(SETTINGS)
    return SeedDataService(
        store=SeedStore(client("s3"), s3_presign_client(), settings.bucket_name),
        templates=TemplateRepository(client("dynamodb"), settings.templates_table),
        upload_max_bytes=settings.upload_max_bytes,
        upload_expires_seconds=settings.upload_url_expires_seconds,
    )


def _json(status: int, body: Any) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


@router.post(
    "/seed-data/upload",
    tags=["seed-data"],
    summary="Presigned upload of a seed file to seed-data/{you}/{name}",
    description=(
        "Answers a presigned PUT (send the same Content-Type) and a presigned POST form whose policy "
        "enforces the content type and the size limit. Both expire after `expires_in` seconds."
    ),
    responses={
        200: {"description": "Upload URL and form"},
        400: error_doc("Unsafe filename, or no format given"),
    },
)
def upload_seed_data(request: UploadRequest) -> UploadResponse:
    caller = current_caller(router)
    return _service().upload(caller.user_id, request)


@router.post(
    "/seed-data/validate",
    tags=["seed-data"],
    summary="Check that every record of an uploaded seed file has the fields a template reads",
    description=(
        "Streams the whole object: a JSON object, a JSON array of objects, JSONL, or CSV with a header "
        "row (dotted column names are nested fields). Malformed data is a 400 naming the line; an empty "
        "file is a 400."
    ),
    responses={
        200: {
            "description": "Every record has every required field",
            "content": {"application/json": {"model": ValidationSuccess}},
        },
        400: {
            "description": "Missing fields (the first 20 problems), malformed or empty data",
            "content": {"application/json": {"model": ValidationFailure}},
        },
        403: error_doc("Not under your seed-data prefix, or another user's private template"),
        404: error_doc("No such template (version) or seed object"),
    },
)
def validate_seed_data(request: ValidateRequest) -> Response[ValidationSuccess | ValidationFailure]:
    caller = current_caller(router)
    report = _service().validate(caller.user_id, request)
    return _json(200 if report.valid else 400, report)


app = build_resolver(router)
coldstart.imported()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
