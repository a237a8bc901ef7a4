"""Test-side helpers for the stream consumers: real stream records, jobs as the API writes them,
and a stand-in for the job lifecycle state machine.

- ``StreamTap`` reads the records moto's DynamoDB Streams really produced for a table
  (describe_stream / get_shard_iterator / get_records) and ``stream_event`` wraps them into the
  Lambda DynamoDB stream event of tests/events/dynamodb_stream.json, the way the event source
  mapping delivers them.
- ``queue_job`` writes a job exactly as the jobs API does (docs/data-model.md, lifecycle step 1).
- ``LifecycleStandIn`` plays the lifecycle state machine's part (step 3) with the same conditional
  writes, in the same order; in production the ASL in statemachines/ does this, and
  tests/statemachines/ tests that. Here it only has to be faithful enough to drive the promoter.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from moto.core.botocore_stubber import BotocoreStubber

from functions.common import queued_jobs
from functions.common import settings as s
from functions.common.clock import now_iso, to_iso
from tests.conftest import load_event

JOBS_TABLE = s.JobsTableSettings().jobs_table
QUEUE_TABLE = s.QueueTableSettings().queue_table
COST_TABLE = s.CostTrackingTableSettings().cost_tracking_table
TERMINAL = ("COMPLETED", "FAILED", "BUDGET_EXCEEDED", "CANCELLED")

_SER = TypeSerializer()
_DES = TypeDeserializer()


def av(value: Any) -> dict[str, Any]:
    return _SER.serialize(value)


def plain(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _DES.deserialize(v) for k, v in item.items()}


# --- stream records -------------------------------------------------------------------------------


class StreamTap:
    """Reads a table's stream records in order, each exactly once, across calls.

    A fresh iterator is taken after the last sequence number on every read: moto swaps a table's
    stream shard object when it rolls back a cancelled transaction, which strands old iterators.
    """

    def __init__(self, session: Any, table_name: str) -> None:
        self._streams = session.client("dynamodbstreams")
        self.stream_arn = session.client("dynamodb").describe_table(TableName=table_name)["Table"][
            "LatestStreamArn"
        ]
        self._last: dict[str, str] = {}

    def read(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        shards = self._streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
        for shard in shards:
            shard_id = shard["ShardId"]
            kwargs: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": shard_id}
            if shard_id in self._last:
                kwargs |= {
                    "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                    "SequenceNumber": self._last[shard_id],
                }
            else:
                kwargs["ShardIteratorType"] = "TRIM_HORIZON"
            iterator = self._streams.get_shard_iterator(**kwargs)["ShardIterator"]
            while iterator:
                answer = self._streams.get_records(ShardIterator=iterator, Limit=1000)
                batch = answer.get("Records", [])
                if not batch:
                    break
                records.extend(batch)
                self._last[shard_id] = batch[-1]["dynamodb"]["SequenceNumber"]
                iterator = answer.get("NextShardIterator")
        return records


def stream_event(records: list[dict[str, Any]], stream_arn: str) -> dict[str, Any]:
    """The Lambda event for ``records`` (as get_records returned them), built on the sample event."""
    template = load_event("dynamodb_stream")["Records"][0]
    out = []
    for record in records:
        event_record = copy.deepcopy(template)
        event_record["eventID"] = record["eventID"]
        event_record["eventName"] = record["eventName"]
        event_record["awsRegion"] = record.get("awsRegion", template["awsRegion"])
        event_record["eventSourceARN"] = stream_arn
        body = copy.deepcopy(record["dynamodb"])
        created = body.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):
            body["ApproximateCreationDateTime"] = created.timestamp()
        event_record["dynamodb"] = body
        out.append(event_record)
    return {"Records": out}


def batches(records: list[dict[str, Any]], size: int) -> list[list[dict[str, Any]]]:
    return [records[i : i + size] for i in range(0, len(records), size)]


# --- moto under threads ---------------------------------------------------------------------------


@contextmanager
def atomic_requests() -> Iterator[None]:
    """Make every moto request atomic, as each DynamoDB request is in AWS.

    moto's transact_write_items deep-copies a table and restores the copy when a transaction is
    cancelled, so a concurrent request in another thread would be silently undone. Serializing
    requests keeps the races the code under test must handle (between its requests) and removes
    the ones moto would invent (inside one request).
    """
    lock = threading.RLock()
    original = BotocoreStubber.process_request

    def locked(self: BotocoreStubber, request: Any) -> Any:
        with lock:
            return original(self, request)

    BotocoreStubber.process_request = locked  # type: ignore[method-assign]
    try:
        yield
    finally:
        BotocoreStubber.process_request = original  # type: ignore[method-assign]


# --- jobs as the API writes them ------------------------------------------------------------------

_BASE_TIME = datetime(2026, 11, 28, 15, 0, 0, tzinfo=UTC)


def queue_job(
    dynamodb: Any,
    *,
    priority: int = 5,
    seconds: float = 0,
    user_id: str = "user-1",
    budget_limit: Decimal = Decimal("10"),
    job_id: str | None = None,
) -> str:
    """Put a QUEUED job and its Queue item, and add it to its user's QUEUED set, in one transaction
    (docs/data-model.md, step 1; the template's items are left out).

    ``seconds`` offsets ``created_at`` from a fixed base, so tests control the order.
    """
    job_id = job_id or str(uuid.uuid4())
    created_at = to_iso(_BASE_TIME + timedelta(seconds=seconds))
    queue_key = f"{10 - priority:02d}#{created_at}#{job_id}"
    zero = Decimal(0)
    job = {
        "job_id": job_id,
        "user_id": user_id,
        "status": "QUEUED",
        "user_status": f"{user_id}#QUEUED",
        "template_id": "template-1",
        "template_version": 1,
        "seed_data_path": f"seed-data/{user_id}/authors.json",
        "budget_limit": budget_limit,
        "output_format": "JSONL",
        "num_records": 100,
        "priority": priority,
        "queue_key": queue_key,
        "created_at": created_at,
        "updated_at": created_at,
        "records_generated": 0,
        "tokens_used": 0,
        "cost": {"bedrock": zero, "fargate": zero, "s3": zero, "total": zero},
    }
    entry = {
        "status": "QUEUED",
        "queue_key": queue_key,
        "job_id": job_id,
        "user_id": user_id,
        "priority": priority,
        "created_at": created_at,
    }
    dynamodb.transact_write_items(
        TransactItems=[
            {
                "Put": {
                    "TableName": JOBS_TABLE,
                    "Item": {k: av(v) for k, v in job.items()},
                    "ConditionExpression": "attribute_not_exists(job_id)",
                }
            },
            {"Put": {"TableName": QUEUE_TABLE, "Item": {k: av(v) for k, v in entry.items()}}},
            queued_jobs.admit_item(QUEUE_TABLE, user_id, job_id, max_queued=1000),
        ]
    )
    return job_id


def user_queued_ids(dynamodb: Any, user_id: str = "user-1") -> set[str]:
    """The user's QUEUED set (the jobs API's queued quota)."""
    item = dynamodb.get_item(
        TableName=QUEUE_TABLE, Key=queued_jobs.user_queued_key(user_id), ConsistentRead=True
    ).get("Item")
    return set(plain(item).get(queued_jobs.JOB_IDS, set())) if item else set()


def get_job(dynamodb: Any, job_id: str) -> dict[str, Any] | None:
    item = dynamodb.get_item(TableName=JOBS_TABLE, Key={"job_id": av(job_id)}, ConsistentRead=True).get(
        "Item"
    )
    return plain(item) if item else None


def slot_holders(dynamodb: Any) -> set[str]:
    item = dynamodb.get_item(
        TableName=QUEUE_TABLE, Key={"status": av("SLOTS"), "queue_key": av("RUNNING")}, ConsistentRead=True
    ).get("Item")
    return set(plain(item).get("holders", set())) if item else set()


def queued_job_ids(dynamodb: Any) -> list[str]:
    items = dynamodb.query(
        TableName=QUEUE_TABLE,
        KeyConditionExpression="#s = :q",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":q": av("QUEUED")},
        ConsistentRead=True,
    )["Items"]
    return [plain(i)["job_id"] for i in items]


def jobs_by_status(dynamodb: Any) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    kwargs: dict[str, Any] = {
        "TableName": JOBS_TABLE,
        "ProjectionExpression": "job_id, #s",
        "ExpressionAttributeNames": {"#s": "status"},
        "ConsistentRead": True,
    }
    while True:
        page = dynamodb.scan(**kwargs)
        for item in page["Items"]:
            row = plain(item)
            found.setdefault(row["status"], []).append(row["job_id"])
        if "LastEvaluatedKey" not in page:
            return found
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def count_with_status(dynamodb: Any, status: str, user_id: str = "user-1") -> int:
    """How many of the user's jobs have ``status``, by the user-status-index (moto keeps GSIs
    immediately consistent, so this is an exact sample there; in AWS it would lag slightly)."""
    kwargs: dict[str, Any] = {
        "TableName": JOBS_TABLE,
        "IndexName": "user-status-index",
        "KeyConditionExpression": "user_status = :us",
        "ExpressionAttributeValues": {":us": av(f"{user_id}#{status}")},
        "Select": "COUNT",
    }
    total = 0
    while True:
        page = dynamodb.query(**kwargs)
        total += page["Count"]
        if "LastEvaluatedKey" not in page:
            return total
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def executions_by_name(sfn: Any, state_machine_arn: str) -> dict[str, int]:
    """How many executions each name has (StartExecution by name must keep it at one)."""
    counts: dict[str, int] = {}
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=state_machine_arn):
        for execution in page["executions"]:
            counts[execution["name"]] = counts.get(execution["name"], 0) + 1
    return counts


# --- the lifecycle's part -------------------------------------------------------------------------


class LifecycleStandIn:
    """Plays the job lifecycle state machine (docs/data-model.md, step 3) for promoter tests.

    In production the lifecycle ASL does this; only the order and the conditions matter here:
    mark RUNNING (conditional), later write the terminal status (conditional on RUNNING), THEN
    release the slot, THEN write ``slot_released_at`` (which triggers the promoter).
    """

    def __init__(self, dynamodb: Any) -> None:
        self._db = dynamodb

    def mark_running(self, job_id: str, user_id: str = "user-1") -> bool:
        now = now_iso()
        try:
            self._db.update_item(
                TableName=JOBS_TABLE,
                Key={"job_id": av(job_id)},
                UpdateExpression="SET #s = :running, user_status = :us, started_at = :now, updated_at = :now",
                ConditionExpression="#s = :queued AND attribute_not_exists(cancel_requested_at)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":running": av("RUNNING"),
                    ":queued": av("QUEUED"),
                    ":us": av(f"{user_id}#RUNNING"),
                    ":now": av(now),
                },
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            # Not promotable any more: give the slot back and end.
            self.release(job_id)
            return False
        return True

    def finish(self, job_id: str, status: str = "COMPLETED", user_id: str = "user-1") -> None:
        now = now_iso()
        self._db.update_item(
            TableName=JOBS_TABLE,
            Key={"job_id": av(job_id)},
            UpdateExpression="SET #s = :done, user_status = :us, completed_at = :now, updated_at = :now",
            ConditionExpression="#s = :running",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":done": av(status),
                ":running": av("RUNNING"),
                ":us": av(f"{user_id}#{status}"),
                ":now": av(now),
            },
        )
        self.release(job_id)

    def release(self, job_id: str) -> None:
        try:
            self._db.update_item(
                TableName=QUEUE_TABLE,
                Key={"status": av("SLOTS"), "queue_key": av("RUNNING")},
                UpdateExpression="DELETE holders :job",
                ConditionExpression="contains(holders, :id)",
                ExpressionAttributeValues={":job": {"SS": [job_id]}, ":id": av(job_id)},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return  # released before: release happens at most once
        now = now_iso()
        self._db.update_item(
            TableName=JOBS_TABLE,
            Key={"job_id": av(job_id)},
            UpdateExpression="SET slot_released_at = :now, updated_at = :now",
            ConditionExpression="attribute_exists(job_id)",
            ExpressionAttributeValues={":now": av(now)},
        )
