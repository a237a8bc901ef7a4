"""Jobs API: POST/GET /jobs, GET/DELETE /jobs/{job_id}, POST /jobs/{job_id}/cancel,
GET /jobs/{job_id}/download.

Routing and decorators only; the rules are in ``functions.jobs.service``.
"""

from __future__ import annotations

# First: no collector passes while this module imports (functions/common/coldstart.py).
from functions.common import coldstart

# isort: split

from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Header, Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common import metric_names
from functions.common.api import api_responses, build_resolver, current_caller
from functions.common.aws import client, s3_presign_client
from functions.common.observability import logger, metrics, publish_metrics
from functions.common.publisher import EventPublisher
from functions.common.settings import (
    BucketSettings,
    EventBusSettings,
    IdempotencyTableSettings,
    JobQuotaSettings,
    JobsTableSettings,
    QueueTableSettings,
    TemplatesTableSettings,
    UploadSettings,
    load_settings,
)
from functions.jobs.models import (
    CreateJobRequest,
    CreateJobResponse,
    DownloadResponse,
    JobActionResponse,
    JobDetail,
    JobListResponse,
    JobStatus,
)
from functions.jobs.repository import JobFiles, JobsRepository
from functions.jobs.service import JobQuota, JobsService, create_rate_limiter

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import BasePersistenceLayer

    from functions.common.rate_limit import RateLimiter
    from functions.jobs.service import TemplateReader


class JobsApiSettings(
    JobsTableSettings,
    QueueTableSettings,
    TemplatesTableSettings,
    IdempotencyTableSettings,
    BucketSettings,
    EventBusSettings,
    JobQuotaSettings,
    UploadSettings,
):
    pass


SETTINGS = JobsApiSettings
router = APIGatewayHttpRouter()


def _service(*, creating: bool = False) -> JobsService:
    """The service of every route; ``creating``: with what only POST /jobs uses."""
    settings = load_settings(SETTINGS)
    dynamodb = client("dynamodb")
    templates: TemplateReader | None = None
    idempotency_store: BasePersistenceLayer | None = None
    create_limiter: RateLimiter | None = None
    if creating:
        # The template lookup, the Idempotency-Key records and the rate limit are imported by the
        # create only: the other routes' cold start skips them (benchmarks/cold_start.py).
        from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

        from functions.templates.repository import TemplateRepository

        templates = TemplateRepository(dynamodb, settings.templates_table)
        idempotency_store = DynamoDBPersistenceLayer(
            table_name=settings.idempotency_table, boto3_client=dynamodb
        )
        create_limiter = create_rate_limiter(
            dynamodb, settings.idempotency_table, settings.max_jobs_created_per_minute
        )
    return JobsService(
        jobs=JobsRepository(dynamodb, settings.jobs_table, settings.queue_table, settings.templates_table),
        files=JobFiles(client("s3"), settings.bucket_name, presign_client=s3_presign_client()),
        publisher=EventPublisher(client("events"), settings.event_bus_name),
        templates=templates,
        idempotency_store=idempotency_store,
        idempotency_ttl_seconds=settings.idempotency_ttl_seconds,
        seed_max_bytes=settings.upload_max_bytes,
        lambda_context=router.lambda_context,
        quota=JobQuota(max_queued=settings.max_queued_jobs_per_user),
        create_limiter=create_limiter,
    )


_OWNED = {"e401": "No JWT claims", "e403": "Another user's job", "e404": "Job not found"}


def _json(status: int, body: Any) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


@router.post(
    "/jobs",
    tags=["jobs"],
    summary="Queue a generation job",
    description=(
        "Queues a job for a template version readable by you and one of your seed-data uploads. "
        "With an `Idempotency-Key` header a retry answers the first answer and creates nothing; the "
        "same key with a different body is a 400, a retry while the first is still running a 409, and "
        "a retry after its job was deleted a 409 too. Per-user quotas, counted in the create's own "
        "transaction so concurrent creates never pass them: jobs QUEUED at once, and creates per "
        "calendar minute (a fixed window); a refused create answers 429 with `Retry-After` and "
        "writes nothing, and a request refused as invalid (400/403/404) uses up neither."
    ),
    responses=api_responses(
        (201, "Queued"),
        e400=(
            "Malformed Idempotency-Key, or one already used with a different body, an "
            "export_config.compression the output_format cannot use, or a seed file larger than the "
            "upload limit"
        ),
        e401="No JWT claims",
        e403="seed_data_path is not under seed-data/{you}/",
        e404="Template version (yours or public) or seed object not found",
        e409="A request with this Idempotency-Key is still in progress, or its job was deleted",
        e429=(
            "A per-user quota is used up (jobs waiting, or jobs created in this minute), or too many "
            "of your creates ran at once; see Retry-After. Nothing was created"
        ),
    ),
)
def create_job(
    request: CreateJobRequest,
    idempotency_key: Annotated[
        str | None, Header(alias="idempotency-key", description="Makes a retried create safe.")
    ] = None,
) -> Response[CreateJobResponse]:
    caller = current_caller(router)
    answer = _service(creating=True).create(caller.user_id, request, idempotency_key)
    metrics.add_metric(name=metric_names.JOBS_CREATED, unit=MetricUnit.Count, value=1)
    return _json(201, answer)


@router.get(
    "/jobs",
    tags=["jobs"],
    summary="Your jobs, newest first",
    responses=api_responses((200, "A page"), e400="Invalid cursor", e401="No JWT claims"),
)
def list_jobs(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    status: Annotated[JobStatus | None, Query()] = None,
    last_key: Annotated[str | None, Query(description="Cursor from the previous page.")] = None,
) -> JobListResponse:
    caller = current_caller(router)
    return _service().list_jobs(caller.user_id, limit, status, last_key)


@router.get(
    "/jobs/<job_id>",
    tags=["jobs"],
    summary="One of your jobs, with its config",
    responses=api_responses((200, "The job"), **_OWNED),
)
def get_job(job_id: str) -> JobDetail:
    caller = current_caller(router)
    return _service().get(caller.user_id, job_id)


@router.delete(
    "/jobs/<job_id>",
    tags=["jobs"],
    summary="Cancel an active job, or delete a finished one",
    description=(
        "QUEUED or RUNNING: records the cancellation request and emits `Job Cancellation Requested` "
        "(asking again answers 202 again). Terminal: emits `Job Deletion Requested`. A job that "
        "finishes while being cancelled answers 409. **Race:** a DELETE meant as a cancel that "
        "arrives just after the job finished deletes the job and its output; to cancel, use "
        "`POST /jobs/{job_id}/cancel`, which never deletes."
    ),
    responses=api_responses((202, "Requested"), **_OWNED, e409="The job finished while being cancelled"),
)
def delete_job(job_id: str) -> Response[JobActionResponse]:
    caller = current_caller(router)
    return _json(202, _service().delete(caller.user_id, job_id))


@router.post(
    "/jobs/<job_id>/cancel",
    tags=["jobs"],
    summary="Cancel a queued or running job (never deletes)",
    description=(
        "QUEUED or RUNNING: records the cancellation request and emits `Job Cancellation Requested`; "
        "a state machine then ends the job as CANCELLED (asking again answers 202 again). A job that "
        "already finished, or finishes while being cancelled, answers 409 naming its status and is "
        "left as it is: unlike DELETE, this route never deletes a job or its output."
    ),
    responses=api_responses((202, "Cancellation requested"), **_OWNED, e409="The job already finished"),
)
def cancel_job(job_id: str) -> Response[JobActionResponse]:
    caller = current_caller(router)
    return _json(202, _service().cancel(caller.user_id, job_id))


@router.get(
    "/jobs/<job_id>/download",
    tags=["jobs"],
    summary="One-hour download links to a job's export files",
    description=(
        "A COMPLETED job's export, or the committed part of a job that ended BUDGET_EXCEEDED, "
        "CANCELLED or FAILED (`partial: true`); `records` is the number of records in the files. "
        "One link per file, in record order (several files with `partition_strategy: records:N`)."
    ),
    responses=api_responses(
        (200, "The links"),
        e401="No JWT claims",
        e403="Another user's job",
        e404="Job or export not found",
        e409="The job has no export: still queued or running, or stopped before any batch committed",
    ),
)
def download_job(job_id: str) -> DownloadResponse:
    caller = current_caller(router)
    return _service().download(caller.user_id, job_id)


app = build_resolver(router)
coldstart.imported()


@publish_metrics
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
