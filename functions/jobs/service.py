"""The jobs rules: create (optionally idempotent), list, read, cancel or delete, download.

Collaborators come in through the constructor; nothing here reads the environment or builds a client.

Decisions where the issue is silent (also in the route descriptions):

* ``Idempotency-Key``: the idempotency record is keyed by the caller **and** the key, so two users'
  identical keys never collide. A retry with the same key and the same body answers the first
  answer (201, same ``job_id``) and writes nothing. The same key with a *different* body is a 400
  (as Stripe answers it; the API answers 400 for every request it cannot accept as sent);
  while the first request is still running, a retry is a 409. Keys are 1..128 printable ASCII
  characters and are remembered for ``IDEMPOTENCY_TTL_SECONDS`` (default one hour). A retry whose
  job has been deleted since is a 409 saying so (never 201 with the id of a job that 404s).
* ``Job Queued`` is informational (the promoter reacts to the Jobs stream, not to the event): if it
  cannot be published after the job is committed, the failure is logged and the create still
  answers 201, because answering 500 would make clients retry into a duplicate job.
* ``POST /jobs/{id}/cancel`` is the explicit cancel (issue 13): QUEUED or RUNNING is cancelled as by
  ``DELETE``; a finished job answers 409 naming its status and is **never** deleted. ``DELETE`` keeps
  the spec's double meaning (cancel an active job, delete a finished one), so a client that means
  "cancel" and races the job's completion deletes the output; UIs should use ``/cancel``.
* Per-user quotas (issue 13), strict: concurrent creates can never pass them together. Both are
  counted in the create's own transaction, so a create refused for any reason (a quota, a template
  deleted meanwhile) writes nothing and counts in neither, and a request refused by validation
  (400/403/404) never reaches them. A replay of an ``Idempotency-Key`` is answered before either.

  - At most ``JobQuota.max_queued`` QUEUED jobs: the transaction adds the job to its user's QUEUED
    set on condition the set is smaller (``functions.common.queued_jobs``); the promoter removes a
    job when it leaves QUEUED. Past it, 429 with ``Retry-After`` ``queued_retry_after_seconds``
    (60 s, about one promotion cycle: a place frees when one of the user's jobs starts).
  - At most ``max_per_minute`` creates per user per minute: the common ``RateLimiter`` (scope
    ``job-create``), its window counters updated in the same transaction. The windows are fixed
    (calendar minutes), so across a window boundary up to twice the limit can pass within 60 s:
    the accepted price of one counter write per request. ``Retry-After`` is the seconds until
    the window ends.
  - Many concurrent creates of one user contend on these items; a create that still conflicts
    after its retries answers 429 with ``Retry-After: 1`` (never a 500 for what a client sent).

  Jobs queued before the set existed are not in it: they leave the quota uncounted (looser, never
  stricter) until they start.
* ``DELETE`` on an active job that already has a cancellation request answers 202 again and re-emits
  ``Job Cancellation Requested`` with the first ``requested_at`` (the cancellation state machine is
  idempotent); so a client whose first call lost the event can simply retry. If the job reached a
  terminal status between the read and the conditional write, the answer is 409 (DELETE again to
  delete it): a cancel never silently turns into a deletion.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from functions.common.clock import now_iso
from functions.common.cursor import decode_cursor, encode_cursor
from functions.common.dynamo import TransactionConflictError
from functions.common.errors import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    TooManyRequestsError,
)
from functions.common.exports import compression_error, exports_prefix
from functions.common.observability import logger
from functions.common.publisher import EventPublisher
from functions.common.storage import (
    SeedFolderTooLargeError,
    SeedPathError,
    is_seed_folder,
    seed_location,
)
from functions.jobs.access import JOB_ID, JobAccess
from functions.jobs.models import (
    CreateJobRequest,
    CreateJobResponse,
    DownloadFile,
    DownloadResponse,
    JobActionResponse,
    JobDetail,
    JobListResponse,
    JobRecord,
    JobStatus,
    JobSummary,
)
from functions.jobs.repository import (
    CountersFullError,
    JobFiles,
    JobIdTakenError,
    JobsRepository,
    QueuedQuotaFullError,
    TemplateVersionGoneError,
    queue_key,
    user_status_key,
)

if TYPE_CHECKING:
    # Only a create uses them, imported by it: the other routes' cold start skips the Powertools
    # idempotency utility and the rate limiter (benchmarks/cold_start.py).
    from aws_lambda_powertools.utilities.idempotency import BasePersistenceLayer

    from functions.common.rate_limit import RateLimiter

DOWNLOAD_EXPIRES_SECONDS = 3600
# Jobs that stopped before completing: their export (if a batch committed) is partial.
STOPPED = frozenset({JobStatus.BUDGET_EXCEEDED, JobStatus.CANCELLED, JobStatus.FAILED})
IDEMPOTENCY_KEY_PREFIX = "plot-palette.jobs.create"
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")
# The rate limiter's scope of job creates (its counters' ids start ``rate-limit#job-create#``).
CREATE_RATE_SCOPE = "job-create"


@dataclass(frozen=True)
class JobQuota:
    max_queued: int = 100
    # Retry-After of the queued quota: a place frees when a job starts; one promotion cycle is a guess.
    queued_retry_after_seconds: int = 60


def create_rate_limiter(
    dynamodb_client: Any, table_name: str, max_per_minute: int, clock: Callable[[], float] = time.time
) -> RateLimiter:
    """The per-user limit on job creates: ``max_per_minute`` in each fixed minute window."""
    from functions.common.rate_limit import RateLimiter, Window  # creates only (see TYPE_CHECKING)

    return RateLimiter(
        dynamodb_client,
        table_name,
        scope=CREATE_RATE_SCOPE,
        windows=[Window(60, max_per_minute)],
        clock=clock,
    )


class ReadableTemplate(Protocol):
    @property
    def template_id(self) -> str: ...

    @property
    def version(self) -> int: ...

    def is_readable_by(self, user_id: str) -> bool: ...


class TemplateReader(Protocol):
    """What the service needs of ``functions.templates.repository.TemplateRepository``."""

    def get_version(self, template_id: str, version: int | None = None) -> ReadableTemplate | None: ...


class JobsService:
    def __init__(
        self,
        *,
        jobs: JobsRepository,
        files: JobFiles,
        publisher: EventPublisher,
        templates: TemplateReader | None = None,
        idempotency_store: BasePersistenceLayer | None = None,
        idempotency_ttl_seconds: int = 3600,
        seed_max_bytes: int | None = None,
        lambda_context: Any = None,
        clock: Callable[[], str] = now_iso,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        quota: JobQuota | None = None,
        create_limiter: RateLimiter | None = None,
    ) -> None:
        """``templates``, ``idempotency_store``, ``quota`` and ``create_limiter`` serve creates only:
        without ``templates`` a create is refused (a RuntimeError), without ``idempotency_store`` a
        create with an Idempotency-Key; ``create_limiter`` (``create_rate_limiter``) limits creates
        per user, None: no rate limit."""
        self._quota = quota or JobQuota()
        self._create_limiter = create_limiter
        self._jobs = jobs
        self._access = JobAccess(jobs)
        self._files = files
        self._templates = templates
        self._publisher = publisher
        self._clock = clock
        self._new_id = new_id
        self._seed_max_bytes = seed_max_bytes
        self._idempotent_create: Callable[..., CreateJobResponse] | None = None
        if idempotency_store is not None:
            from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
            from aws_lambda_powertools.utilities.idempotency.serialization.pydantic import PydanticSerializer

            # The record is found by (caller, key); the stored hash of the body makes a reused key
            # with a different body an IdempotencyValidationError.
            config = IdempotencyConfig(
                event_key_jmespath="[user_id, idempotency_key]",
                payload_validation_jmespath="request",
                raise_on_no_idempotency_key=True,
                expires_after_seconds=idempotency_ttl_seconds,
                lambda_context=lambda_context,
            )
            self._idempotent_create = idempotent_function(
                self._create_idempotently,
                data_keyword_argument="idempotency",
                persistence_store=idempotency_store,
                config=config,
                output_serializer=PydanticSerializer(model=CreateJobResponse),
                key_prefix=IDEMPOTENCY_KEY_PREFIX,
            )

    # ------------------------------------------------------------ create

    def create(
        self, user_id: str, request: CreateJobRequest, idempotency_key: str | None = None
    ) -> CreateJobResponse:
        if idempotency_key is None:
            return self._create(user_id, request)
        if not _IDEMPOTENCY_KEY.match(idempotency_key):
            raise BadRequestError("Idempotency-Key must be 1..128 printable ASCII characters without spaces")
        if self._idempotent_create is None:
            raise RuntimeError("idempotency is not configured")
        from aws_lambda_powertools.utilities.idempotency.exceptions import (
            IdempotencyAlreadyInProgressError,
            IdempotencyValidationError,
        )

        payload = {
            "user_id": user_id,
            "idempotency_key": idempotency_key,
            "request": request.model_dump(mode="json"),
        }
        try:
            answer = self._idempotent_create(user_id=user_id, request=request, idempotency=payload)
        except IdempotencyValidationError:
            raise BadRequestError("Idempotency-Key was already used with a different request body") from None
        except IdempotencyAlreadyInProgressError:
            raise ConflictError("A request with this Idempotency-Key is still in progress") from None
        if self._jobs.get(answer.job_id) is None:
            # A replay whose job has since been deleted: its id would only answer 404.
            raise ConflictError(
                f"The job created with this Idempotency-Key ({answer.job_id}) has been deleted; "
                "send a new Idempotency-Key to create another job"
            )
        return answer

    def _create_idempotently(
        self, *, user_id: str, request: CreateJobRequest, idempotency: dict[str, Any]
    ) -> CreateJobResponse:
        return self._create(user_id, request)

    def _readable_template(self, user_id: str, request: CreateJobRequest) -> ReadableTemplate:
        if self._templates is None:
            raise RuntimeError("this service reads no templates: it cannot create jobs")
        template = self._templates.get_version(request.template_id, request.template_version)
        if template is None or not template.is_readable_by(user_id):
            # Another user's private template answers like a missing one: no existence leak.
            raise NotFoundError("Template version not found")
        return template

    def _create(self, user_id: str, request: CreateJobRequest) -> CreateJobResponse:
        if (problem := compression_error(request.output_format, request.export_config)) is not None:
            raise BadRequestError(problem)
        template = self._readable_template(user_id, request)
        seed_key = self._seed_key(user_id, request.seed_data_path)

        created_at = self._clock()
        job_id = self._new_id()
        job = {
            "job_id": job_id,
            "user_id": user_id,
            "status": JobStatus.QUEUED.value,
            "user_status": user_status_key(user_id, JobStatus.QUEUED),
            "template_id": template.template_id,
            "template_version": template.version,
            "seed_data_path": seed_key,
            "budget_limit": request.budget_limit,
            "output_format": request.output_format.value,
            "num_records": request.num_records,
            "priority": request.priority,
            "task_size": request.task_size.value,
            "partition_strategy": request.partition_strategy,
            "export_config": request.export_config.model_dump(mode="json", exclude_none=True),
            "queue_key": queue_key(request.priority, created_at, job_id),
            "created_at": created_at,
            "updated_at": created_at,
            "records_generated": 0,
            "tokens_used": 0,
            "cost": {"bedrock": 0, "fargate": 0, "s3": 0, "total": 0},
        }
        rate = self._create_limiter.count(user_id) if self._create_limiter is not None else None
        try:
            self._jobs.create(job, max_queued=self._quota.max_queued, counters=rate.items if rate else ())
        except TemplateVersionGoneError:
            raise NotFoundError("Template version not found") from None
        except JobIdTakenError:
            raise ConflictError("Job id collision; retry the request") from None
        except QueuedQuotaFullError:
            raise TooManyRequestsError(
                f"You have {self._quota.max_queued} jobs waiting, the most allowed; "
                "try again when some have started",
                self._quota.queued_retry_after_seconds,
            ) from None
        except CountersFullError as error:
            refusal = rate.refusal(error.codes) if rate is not None else None
            if refusal is None:
                raise
            raise refusal from None
        except TransactionConflictError:
            raise TooManyRequestsError("Too many concurrent job creates; retry in a second", 1) from None
        from functions.common.events import JobQueued  # the event models load on a publishing route only

        try:
            self._publisher.publish(
                JobQueued(
                    job_id=job_id,
                    user_id=user_id,
                    template_id=template.template_id,
                    template_version=template.version,
                    priority=request.priority,
                    num_records=request.num_records,
                    created_at=created_at,
                )
            )
        except Exception:
            logger.exception("Job Queued not published; the job is committed", extra={"job_id": job_id})
        logger.info("Job queued", extra={"job_id": job_id, "template_id": template.template_id})
        return CreateJobResponse(job_id=job_id, status=JobStatus.QUEUED, created_at=created_at)

    def _seed_key(self, user_id: str, path: str) -> str:
        """The key or folder the job reads (an ``s3://`` URI is stored as its key): 403 when it is
        not the caller's, 404 when there is no such object or no file in the folder."""
        try:
            key = seed_location(path, user_id, self._files.bucket)
        except SeedPathError as error:
            raise ForbiddenError(f"{error}: one of your uploads, or a folder of them") from None
        if is_seed_folder(key):
            try:
                found = bool(self._files.seed_files(key))
            except SeedFolderTooLargeError as error:
                raise BadRequestError(str(error)) from None
            if not found:
                raise NotFoundError("Seed data not found")
        else:
            self._check_seed_size(key)
        return key

    def _check_seed_size(self, key: str) -> None:
        """404 without the object; 400 when it is larger than an upload may be (a presigned PUT
        cannot bound the size it accepts, so the object's own size decides)."""
        size = self._files.size(key)
        if size is None:
            raise NotFoundError("Seed data not found")
        if self._seed_max_bytes is not None and size > self._seed_max_bytes:
            raise BadRequestError(
                f"The seed file is {size} bytes; the upload limit is {self._seed_max_bytes} bytes"
            )

    # ------------------------------------------------------------ reads

    def list_jobs(
        self, user_id: str, limit: int, status: JobStatus | None, last_key: str | None
    ) -> JobListResponse:
        start_key = self._decode_list_cursor(user_id, status, last_key) if last_key else None
        page = self._jobs.list_for_user(user_id, limit, status, start_key)
        return JobListResponse(
            jobs=[JobSummary.of(job) for job in page.jobs],
            last_key=encode_cursor(page.last_key) if page.last_key else None,
        )

    @staticmethod
    def _decode_list_cursor(user_id: str, status: JobStatus | None, cursor: str) -> dict[str, str]:
        key_name = "user_id" if status is None else "user_status"
        expected = user_id if status is None else user_status_key(user_id, status)
        payload = decode_cursor(cursor, ("job_id", key_name, "created_at"))
        # Another user's cursor, or one from a listing with another filter, is as bad as garbage.
        if payload[key_name] != expected or not all(isinstance(v, str) for v in payload.values()):
            raise BadRequestError("Invalid pagination cursor")
        if not JOB_ID.match(payload["job_id"]) or len(payload["created_at"]) > 64:
            raise BadRequestError("Invalid pagination cursor")
        return payload

    def owned_job(self, user_id: str, job_id: str) -> JobRecord:
        return self._access.owned_job(user_id, job_id)

    def get(self, user_id: str, job_id: str) -> JobDetail:
        return JobDetail.of(self.owned_job(user_id, job_id))

    # ------------------------------------------------------------ cancel / delete

    def delete(self, user_id: str, job_id: str) -> JobActionResponse:
        job = self.owned_job(user_id, job_id)
        if job.status.is_active:
            return self._cancel(job)
        return self._request_deletion(job)

    def cancel(self, user_id: str, job_id: str) -> JobActionResponse:
        """Cancel a QUEUED or RUNNING job; a finished one is a 409 naming its status, never deleted."""
        job = self.owned_job(user_id, job_id)
        if not job.status.is_active:
            raise ConflictError(f"The job already finished ({job.status.value}); nothing to cancel")
        return self._cancel(job, retry_hint="")

    def _cancel(
        self, job: JobRecord, retry_hint: str = "; DELETE it again to delete it"
    ) -> JobActionResponse:
        requested_at = self._clock()
        outcome = self._jobs.request_cancel(job.job_id, requested_at)
        current = outcome.job
        if not outcome.recorded:
            if current is None:
                raise NotFoundError("Job not found")
            if not current.status.is_active:
                raise ConflictError(
                    f"The job finished ({current.status.value}) before it could be cancelled{retry_hint}"
                )
            # Already asked: answer the same and re-emit with the first request time.
            requested_at = current.cancel_requested_at or requested_at
        status = current.status if current is not None else job.status
        from functions.common.events import JobCancellationRequested  # see _create

        self._publisher.publish(
            JobCancellationRequested(
                job_id=job.job_id, user_id=job.user_id, requested_at=requested_at, status=status.value
            )
        )
        logger.info("Job cancellation requested", extra={"job_id": job.job_id, "status": status.value})
        return JobActionResponse(message="Cancellation requested", job_id=job.job_id)

    def _request_deletion(self, job: JobRecord) -> JobActionResponse:
        from functions.common.events import JobDeletionRequested  # see _create

        self._publisher.publish(
            JobDeletionRequested(
                job_id=job.job_id, user_id=job.user_id, requested_at=self._clock(), status=job.status.value
            )
        )
        logger.info("Job deletion requested", extra={"job_id": job.job_id, "status": job.status.value})
        return JobActionResponse(message="Deletion requested", job_id=job.job_id)

    # ------------------------------------------------------------ download

    def download(self, user_id: str, job_id: str) -> DownloadResponse:
        """Links to the export files: a COMPLETED job's, or the committed part of a stopped job's."""
        job = self.owned_job(user_id, job_id)
        partial = job.result is not None and job.result.partial
        if job.status is not JobStatus.COMPLETED and not (job.status in STOPPED and partial):
            if job.status in STOPPED:
                raise ConflictError(
                    f"The job is {job.status.value} and no batch of it committed: it has no export"
                )
            raise ConflictError(f"The job is {job.status.value}; it has no export yet")
        keys = self._files.list_keys(exports_prefix(job.job_id))
        if not keys:
            raise NotFoundError("Export not found")
        files = [
            DownloadFile(
                s3_key=key,
                download_url=self._files.presigned_get(
                    key, DOWNLOAD_EXPIRES_SECONDS, job.job_id + key.rsplit("/", 1)[-1].removeprefix("dataset")
                ),
            )
            for key in keys
        ]
        return DownloadResponse(
            job_id=job.job_id,
            download_url=files[0].download_url,
            s3_key=files[0].s3_key,
            output_format=job.output_format,
            expires_in=DOWNLOAD_EXPIRES_SECONDS,
            files=files,
            partial=partial,
            records=job.result.records
            if job.result and job.result.records is not None
            else job.records_generated,
        )
