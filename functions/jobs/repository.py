"""Jobs and Queue tables, and the job's objects in S3, behind small interfaces.

Item layouts, index names and conditions follow docs/data-model.md verbatim.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from functions.common import queued_jobs
from functions.common.dynamo import TransactionConflictError, cancellation_codes, from_item, to_item
from functions.common.retry import RetryPolicy
from functions.common.status import JobStatus
from functions.common.storage import list_seed_files
from functions.jobs.models import JobRecord

USER_ID_INDEX = "user-id-index"
USER_STATUS_INDEX = "user-status-index"
# The Templates table's head item (docs/data-model.md, "Templates table"): holds ``job_refs``.
TEMPLATE_HEAD_VERSION = 0
# Jobs of one template share its head item, and one user's creates share their QUEUED set and rate
# counters, so their transactions may conflict.
CONFLICT_RETRY = RetryPolicy(attempts=5, base_delay=0.02)
# The create transaction's items, in order (``JobsRepository.create``).
_JOB, _QUEUE_ITEM, _TEMPLATE_VERSION, _TEMPLATE_HEAD, _QUEUED_SET, _COUNTERS = range(6)


def user_status_key(user_id: str, status: JobStatus | str) -> str:
    return f"{user_id}#{status}"


def queue_key(priority: int, created_at: str, job_id: str) -> str:
    """Most urgent first (priority 10 sorts as ``00``), then oldest first."""
    return f"{10 - priority:02d}#{created_at}#{job_id}"


class JobIdTakenError(Exception):
    """The transaction's ``attribute_not_exists(job_id)`` failed (a reused job id)."""


class TemplateVersionGoneError(Exception):
    """The ConditionCheck on the template version failed: it was deleted meanwhile."""


class QueuedQuotaFullError(Exception):
    """The user's QUEUED set already holds ``max_queued`` jobs."""


class CountersFullError(Exception):
    """A counter given to ``create`` (a rate limit window) refused; ``codes`` are their reasons."""

    def __init__(self, codes: Sequence[str]) -> None:
        super().__init__(list(codes))
        self.codes = list(codes)


@dataclass(frozen=True)
class Page:
    jobs: list[JobRecord]
    # The index key of the last job returned, when more remain.
    last_key: dict[str, str] | None


@dataclass(frozen=True)
class CancelOutcome:
    """``recorded``: this call wrote ``cancel_requested_at``. Otherwise ``job`` is the item as it was
    when the condition failed (already cancelling, or no longer QUEUED/RUNNING), or None if gone."""

    recorded: bool
    job: JobRecord | None


class JobsRepository:
    def __init__(
        self,
        dynamodb_client: Any,
        jobs_table: str,
        queue_table: str | None = None,
        templates_table: str | None = None,
        *,
        retry: RetryPolicy = CONFLICT_RETRY,
    ) -> None:
        """``queue_table`` and ``templates_table`` are needed by ``create`` only (readers omit them)."""
        self._retry = retry
        self._ddb = dynamodb_client
        self._jobs = jobs_table
        self._queue = queue_table
        self._templates = templates_table

    # ------------------------------------------------------------ writes

    def create(
        self, job: dict[str, Any], *, max_queued: int, counters: Sequence[dict[str, Any]] = ()
    ) -> None:
        """Jobs item + Queue item + template version check + ``ADD job_refs :one`` (and the usage
        counters) on the template's head item + the job's id in its user's QUEUED set (on condition
        the set holds fewer than ``max_queued``) + ``counters`` (the rate limiter's window updates),
        in one transaction (lifecycle step 1): a create refused for any reason writes nothing.

        Raises ``TemplateVersionGoneError`` (a version or head gone: the template is),
        ``JobIdTakenError``, ``QueuedQuotaFullError``, ``CountersFullError`` (with the counters'
        own cancellation codes), or ``TransactionConflictError`` once the retries are spent.
        """
        if self._queue is None or self._templates is None:
            raise RuntimeError("create needs the Queue and Templates table names")
        queue_item = {
            "status": JobStatus.QUEUED.value,
            "queue_key": job["queue_key"],
            "job_id": job["job_id"],
            "user_id": job["user_id"],
            "priority": job["priority"],
            "created_at": job["created_at"],
        }
        transact_items = [
            {
                "Put": {
                    "TableName": self._jobs,
                    "Item": to_item(job),
                    "ConditionExpression": "attribute_not_exists(job_id)",
                }
            },
            {"Put": {"TableName": self._queue, "Item": to_item(queue_item)}},
            {
                "ConditionCheck": {
                    "TableName": self._templates,
                    "Key": to_item({"template_id": job["template_id"], "version": job["template_version"]}),
                    "ConditionExpression": "attribute_exists(template_id)",
                }
            },
            {
                # The template's reference counter (strongly consistent, unlike an index): the
                # template delete refuses while it is above 0. job_count and popularity only ever
                # grow (the marketplace's "popular" order); counted here, once per created job.
                "Update": {
                    "TableName": self._templates,
                    "Key": to_item({"template_id": job["template_id"], "version": TEMPLATE_HEAD_VERSION}),
                    "UpdateExpression": "ADD job_refs :one, job_count :one, popularity :one",
                    "ConditionExpression": "attribute_exists(latest_version)",
                    "ExpressionAttributeValues": to_item({":one": 1}),
                }
            },
            # The per-user queued quota, strict: the user's creates are serialized on this item.
            queued_jobs.admit_item(self._queue, job["user_id"], job["job_id"], max_queued),
            *counters,
        ]
        self._retry.call(lambda: self._create(transact_items), retry_on=TransactionConflictError)

    def _create(self, transact_items: list[dict[str, Any]]) -> None:
        try:
            self._ddb.transact_write_items(TransactItems=transact_items)
        except ClientError as error:
            reasons = cancellation_codes(error)
            if reasons is None or len(reasons) != len(transact_items):
                raise
            failed = [code == "ConditionalCheckFailed" for code in reasons]
            if failed[_TEMPLATE_VERSION] or failed[_TEMPLATE_HEAD]:
                raise TemplateVersionGoneError from error
            if failed[_JOB]:
                raise JobIdTakenError from error
            if failed[_QUEUED_SET]:
                raise QueuedQuotaFullError from error
            if any(failed[_COUNTERS:]):
                raise CountersFullError(reasons[_COUNTERS:]) from error
            if "TransactionConflict" in reasons:
                raise TransactionConflictError(error) from error
            raise

    def request_cancel(self, job_id: str, requested_at: str) -> CancelOutcome:
        """Record the cancellation request once: condition status QUEUED or RUNNING and not yet asked."""
        try:
            self._ddb.update_item(
                TableName=self._jobs,
                Key=to_item({"job_id": job_id}),
                UpdateExpression="SET cancel_requested_at = :now, updated_at = :now",
                ConditionExpression=(
                    "attribute_exists(job_id) AND #status IN (:queued, :running) "
                    "AND attribute_not_exists(cancel_requested_at)"
                ),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item(
                    {
                        ":now": requested_at,
                        ":queued": JobStatus.QUEUED.value,
                        ":running": JobStatus.RUNNING.value,
                    }
                ),
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            old: dict[str, Any] | None = error.response.get("Item")  # type: ignore[assignment]
            # Some emulators omit the old item: read it (one extra read, only on this path).
            job = JobRecord.model_validate(from_item(old)) if old else self.get(job_id)
            return CancelOutcome(recorded=False, job=job)
        return CancelOutcome(recorded=True, job=None)

    # ------------------------------------------------------------ reads

    def get(self, job_id: str) -> JobRecord | None:
        """One GetItem (strongly consistent). The dashboard relies on this being the only read."""
        answer = self._ddb.get_item(
            TableName=self._jobs, Key=to_item({"job_id": job_id}), ConsistentRead=True
        )
        item = answer.get("Item")
        return JobRecord.model_validate(from_item(item)) if item else None

    def list_for_user(
        self,
        user_id: str,
        limit: int,
        status: JobStatus | None = None,
        start_key: dict[str, str] | None = None,
    ) -> Page:
        """Newest first. With a status, the status is the index key, so pages are full."""
        if status is None:
            index, key_name, key_value = USER_ID_INDEX, "user_id", user_id
        else:
            index, key_name, key_value = USER_STATUS_INDEX, "user_status", user_status_key(user_id, status)
        arguments: dict[str, Any] = {
            "TableName": self._jobs,
            "IndexName": index,
            "KeyConditionExpression": "#k = :k",
            "ExpressionAttributeNames": {"#k": key_name},
            "ExpressionAttributeValues": to_item({":k": key_value}),
            "ScanIndexForward": False,
        }
        if start_key is not None:
            arguments["ExclusiveStartKey"] = to_item(start_key)
        jobs: list[JobRecord] = []
        # One more than asked tells whether more remain; loop in case DynamoDB's 1 MB page cuts short.
        while len(jobs) <= limit:
            arguments["Limit"] = limit + 1 - len(jobs)
            answer = self._ddb.query(**arguments)
            jobs.extend(JobRecord.model_validate(from_item(i)) for i in answer.get("Items", []))
            if "LastEvaluatedKey" not in answer:
                break
            arguments["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        if len(jobs) <= limit:
            return Page(jobs=jobs, last_key=None)
        page = jobs[:limit]
        last = page[-1]
        return Page(
            jobs=page, last_key={"job_id": last.job_id, key_name: key_value, "created_at": last.created_at}
        )


class JobFiles:
    """The objects a job reads and produces in the bucket."""

    def __init__(self, s3_client: Any, bucket: str, presign_client: Any = None) -> None:
        """``presign_client`` signs download links; it must sign with SigV4
        (``Config(signature_version="s3v4")``). Defaults to ``s3_client``."""
        self._s3 = s3_client
        self._presign = presign_client or s3_client
        self._bucket = bucket

    @property
    def bucket(self) -> str:
        return self._bucket

    def seed_files(self, folder: str) -> list[str]:
        return list_seed_files(self._s3, self._bucket, folder)

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def size(self, key: str) -> int | None:
        """The object's size in bytes (one HeadObject); None when it does not exist."""
        try:
            answer = self._s3.head_object(Bucket=self._bucket, Key=key)
        except ClientError as error:
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound") or status == 404:
                return None
            raise
        return int(answer.get("ContentLength", 0))

    def list_keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix``, in key order (export files are numbered, so record order)."""
        keys: list[str] = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=prefix):
            keys += [obj["Key"] for obj in page.get("Contents", [])]
        return sorted(keys)

    def presigned_get(self, key: str, expires_in: int, filename: str) -> str:
        url: str = self._presign.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self._bucket,
                "Key": key,
                "ResponseContentDisposition": f'attachment; filename="{filename}"',
            },
            ExpiresIn=expires_in,
        )
        return url
