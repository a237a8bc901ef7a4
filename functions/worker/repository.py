"""The worker's storage: the Jobs item it controls, CostTracking deltas, S3 outputs and seeds.

Everything follows docs/data-model.md: the task token is recorded with ``status = RUNNING`` as the
condition; each batch's cost is one CostTracking item ``record_id = "{batch_index:08d}"`` written
with ``attribute_not_exists(record_id)``; outputs live under ``jobs/{job_id}/``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError
from pydantic import ValidationError

from functions.common.dynamo import error_code, from_item, to_item
from functions.common.status import JobStatus
from functions.common.storage import SeedFolderTooLargeError, job_prefix, list_seed_files
from functions.seed_data.reader import SeedDataError, detect_format, iter_seed_records
from functions.worker.models import Checkpoint, GeneratedRecord, JobControl, RecordFailure, Usage

# Deltas are stored rounded to 1e-10 dollars, so the sum of deltas is exact and reproducible.
MONEY_QUANTUM = Decimal("0.0000000001")
EXPORT_RECORD_ID = "export"
PART_READ_BYTES = 1024 * 1024


def quantize(amount: Decimal) -> Decimal:
    return amount.quantize(MONEY_QUANTUM)


def batch_record_id(batch_index: int) -> str:
    return f"{batch_index:08d}"


# ------------------------------------------------------------------ Jobs


class JobStore:
    """The worker's reads and its one write (``task_token``) on the Jobs table."""

    _CONTROL = (
        "job_id, #status, budget_limit, cancel_requested_at, budget_exceeded, #cost, "
        "partition_strategy, export_config"
    )

    def __init__(self, dynamodb_client: Any, table_name: str) -> None:
        self._table = table_name
        self._ddb = dynamodb_client

    def record_task_token(self, job_id: str, task_token: str, now: str) -> JobControl | None:
        """SET task_token (condition ``status = RUNNING``) and answer the job as it now is.

        A job that is not RUNNING answers with its current status (None if it does not exist).
        """
        try:
            answer = self._ddb.update_item(
                TableName=self._table,
                Key=to_item({"job_id": job_id}),
                UpdateExpression="SET task_token = :token, updated_at = :now",
                ConditionExpression="#status = :running",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item(
                    {":token": task_token, ":now": now, ":running": JobStatus.RUNNING.value}
                ),
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise
            old: dict[str, Any] | None = error.response.get("Item")  # type: ignore[assignment]
            return _control(from_item(old)) if old else None
        return _control(from_item(answer["Attributes"]))

    def read_control(self, job_id: str) -> JobControl | None:
        answer = self._ddb.get_item(
            TableName=self._table,
            Key=to_item({"job_id": job_id}),
            ConsistentRead=True,
            ProjectionExpression=self._CONTROL,
            ExpressionAttributeNames={"#status": "status", "#cost": "cost"},
        )
        item = answer.get("Item")
        return _control(from_item(item)) if item else None


def _control(values: dict[str, Any]) -> JobControl:
    return JobControl.model_validate(values)


# ----------------------------------------------------------- CostTracking


class CostStore:
    """CostTracking deltas: one per completed batch, written once."""

    def __init__(self, dynamodb_client: Any, table_name: str) -> None:
        self._table = table_name
        self._ddb = dynamodb_client

    def put_delta(
        self, job_id: str, record_id: str, usage: Usage, *, model_id: str | None, created_at: str, ttl: int
    ) -> bool:
        """Write the delta; False when it already exists (written by an earlier attempt)."""
        values = {
            "job_id": job_id,
            "record_id": record_id,
            "tokens_in": usage.tokens_in,
            "tokens_out": usage.tokens_out,
            "records": usage.records,
            "records_failed": usage.records_failed,
            "cost": {"bedrock": usage.bedrock, "fargate": usage.fargate, "s3": usage.s3},
            "created_at": created_at,
            "model_id": model_id,
            "ttl": ttl,
        }
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item=to_item(values),
                ConditionExpression="attribute_not_exists(record_id)",
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def get_delta(self, job_id: str, record_id: str) -> Usage | None:
        answer = self._ddb.get_item(
            TableName=self._table,
            Key=to_item({"job_id": job_id, "record_id": record_id}),
            ConsistentRead=True,
        )
        item = answer.get("Item")
        if not item:
            return None
        return _usage(from_item(item))

    def list_deltas(self, job_id: str) -> dict[str, Usage]:
        """Every delta of the job by ``record_id`` (consistent, paginated): what was committed."""
        deltas: dict[str, Usage] = {}
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "job_id = :job",
            "ExpressionAttributeValues": to_item({":job": job_id}),
            "ConsistentRead": True,
        }
        while True:
            page = self._ddb.query(**kwargs)
            for item in page.get("Items", []):
                values = from_item(item)
                deltas[str(values["record_id"])] = _usage(values)
            if not page.get("LastEvaluatedKey"):
                return deltas
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _usage(values: Mapping[str, Any]) -> Usage:
    cost = values.get("cost", {})
    return Usage(
        tokens_in=int(values.get("tokens_in", 0)),
        tokens_out=int(values.get("tokens_out", 0)),
        records=int(values.get("records", 0)),
        records_failed=int(values.get("records_failed", 0)),
        bedrock=Decimal(cost.get("bedrock", 0)),
        fargate=Decimal(cost.get("fargate", 0)),
        s3=Decimal(cost.get("s3", 0)),
    )


# --------------------------------------------------------------------- S3


def part_key(job_id: str, batch_index: int) -> str:
    return f"{job_prefix(job_id)}outputs/part-{batch_index:05d}.jsonl"


def errors_key(job_id: str, batch_index: int) -> str:
    return f"{job_prefix(job_id)}errors/part-{batch_index:05d}.jsonl"


def checkpoint_key(job_id: str, partition: int | None = None) -> str:
    """One checkpoint per partition; ``checkpoint.json`` for a whole-job work item."""
    if partition is None:
        return f"{job_prefix(job_id)}checkpoint.json"
    return f"{job_prefix(job_id)}checkpoints/partition-{partition:05d}.json"


class OutputStore:
    """Parts, error lines, the checkpoint and the export in the data bucket."""

    def __init__(self, s3_client: Any, bucket: str) -> None:
        self._bucket = bucket
        self._s3 = s3_client

    def put_part(self, job_id: str, batch_index: int, records: Iterable[GeneratedRecord]) -> str:
        key = part_key(job_id, batch_index)
        body = "".join(record.model_dump_json() + "\n" for record in records)
        self._s3.put_object(
            Bucket=self._bucket, Key=key, Body=body.encode(), ContentType="application/x-ndjson"
        )
        return key

    def put_failures(self, job_id: str, batch_index: int, failures: Iterable[RecordFailure]) -> str:
        key = errors_key(job_id, batch_index)
        body = "".join(failure.model_dump_json() + "\n" for failure in failures)
        self._s3.put_object(
            Bucket=self._bucket, Key=key, Body=body.encode(), ContentType="application/x-ndjson"
        )
        return key

    def iter_part(self, job_id: str, batch_index: int) -> Iterator[dict[str, Any]]:
        """The records of one part, streamed line by line."""
        for line in self.iter_part_lines(job_id, batch_index):
            yield json.loads(line)

    def iter_part_lines(self, job_id: str, batch_index: int) -> Iterator[bytes]:
        """The lines of one part (one record's JSON each, without the newline), streamed."""
        body = self._s3.get_object(Bucket=self._bucket, Key=part_key(job_id, batch_index))["Body"]
        try:
            # In reads of up to PART_READ_BYTES (botocore's default of 1 KiB costs a checksum update
            # and a copy of the pending line per KiB); memory stays within one part and one read.
            for line in body.iter_lines(chunk_size=PART_READ_BYTES):
                if line.strip():
                    yield line
        finally:
            body.close()

    def get_checkpoint(self, job_id: str, partition: int | None = None) -> Checkpoint | None:
        try:
            body = self._s3.get_object(Bucket=self._bucket, Key=checkpoint_key(job_id, partition))["Body"]
        except ClientError as error:
            if error_code(error) in ("NoSuchKey", "404"):
                return None
            raise
        try:
            return Checkpoint.from_json(body.read())
        except ValidationError:
            return None  # unreadable: start over; deltas already written are not counted twice

    def put_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._s3.put_object(
            Bucket=self._bucket,
            Key=checkpoint_key(checkpoint.job_id, checkpoint.partition),
            Body=checkpoint.to_json().encode(),
            ContentType="application/json",
        )

    def upload_export(self, key: str, path: str, content_type: str, config: Any) -> str:
        self._s3.upload_file(path, self._bucket, key, ExtraArgs={"ContentType": content_type}, Config=config)
        return key


# ------------------------------------------------------------------ seeds


class SeedFileError(Exception):
    """The seed file is missing or cannot be read: the job cannot run."""


class S3SeedSource:
    """Seed records of an uploaded file, streamed with the shared reader (never held in memory)."""

    def __init__(self, s3_client: Any, bucket: str) -> None:
        self._bucket = bucket
        self._s3 = s3_client

    def list_keys(self, folder: str) -> list[str]:
        try:
            return list_seed_files(self._s3, self._bucket, folder)
        except SeedFolderTooLargeError as error:
            raise SeedFileError(f"the seed folder {folder}: {error}") from error

    def open(self, key: str) -> Iterator[dict[str, Any]]:
        try:
            answer = self._s3.get_object(Bucket=self._bucket, Key=key)
        except ClientError as error:
            if error_code(error) in ("NoSuchKey", "404", "AccessDenied"):
                raise SeedFileError(f"the seed file {key} does not exist") from error
            raise
        try:
            fmt = detect_format(key, answer.get("ContentType"))
        except SeedDataError as error:
            answer["Body"].close()
            raise SeedFileError(f"the seed file {key}: {error}") from error
        return self._records(answer["Body"], fmt, key)

    @staticmethod
    def _records(body: Any, fmt: Any, key: str) -> Iterator[dict[str, Any]]:
        try:
            for record in iter_seed_records(body.iter_chunks(), fmt):
                yield record.data
        except SeedDataError as error:
            raise SeedFileError(f"the seed file {key}: {error}") from error
        finally:
            body.close()
