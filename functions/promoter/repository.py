"""DynamoDB and Step Functions access of the queue promoter.

``QueueRepository`` owns the Queue table's waiting items and the running-slot holder set, and reads
the Jobs items it needs; ``LifecycleExecutions`` starts and inspects lifecycle executions by name.
Every read that decides a write is strongly consistent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from botocore.exceptions import ClientError

from functions.common.dynamo import (
    TRANSIENT_REASONS,
    cancellation_reasons,
    error_code,
    from_attribute,
    from_item,
    reason_code,
    to_attribute,
)
from functions.common.status import JobStatus
from functions.promoter.models import (
    SLOTS_PARTITION,
    SLOTS_SORT_KEY,
    ClaimOutcome,
    HeldJob,
    QueueEntry,
    StartOutcome,
    execution_input,
)


class TransientClaimError(Exception):
    """A claim transaction was cancelled for a transient reason (conflict, throttling)."""


class UnexpectedCancellation(Exception):
    """A claim transaction was cancelled for a reason the protocol does not foresee."""


def _slots_key() -> dict[str, Any]:
    return {"status": to_attribute(SLOTS_PARTITION), "queue_key": to_attribute(SLOTS_SORT_KEY)}


def claim_outcome(job_id: str, reasons: list[Any]) -> ClaimOutcome:
    """Read a cancelled claim transaction's reasons (SLOTS update, Queue delete, job check)."""
    if len(reasons) != 3:
        raise UnexpectedCancellation(f"claim of {job_id} cancelled without reasons: {reasons}")
    slot, queue, job = reasons
    codes = {reason_code(r) for r in reasons}
    if codes & TRANSIENT_REASONS:
        raise TransientClaimError(f"claim of {job_id}: {sorted(codes)}")
    unknown = codes - {"None", "ConditionalCheckFailed"}
    if unknown:
        raise UnexpectedCancellation(f"claim of {job_id}: {sorted(unknown)}")

    if reason_code(slot) == "ConditionalCheckFailed":
        holders = from_item(slot.get("Item") or {}).get("holders") or set()
        # Already a holder: someone else claimed this very job. Otherwise every slot is taken.
        return ClaimOutcome.TAKEN if job_id in holders else ClaimOutcome.SLOTS_FULL
    if reason_code(queue) == "ConditionalCheckFailed":
        return ClaimOutcome.TAKEN
    # Only the job's check failed.
    item = from_item(job.get("Item") or {})
    if item.get("status") == JobStatus.QUEUED and "cancel_requested_at" in item:
        return ClaimOutcome.CANCEL_PENDING
    return ClaimOutcome.STALE


class QueueRepository:
    def __init__(self, dynamodb: Any, queue_table: str, jobs_table: str) -> None:
        self._db = dynamodb
        self._queue_table = queue_table
        self._jobs_table = jobs_table

    # --- reads ------------------------------------------------------------------------------------

    def queued_entries(self, page_size: int = 25) -> Iterator[QueueEntry]:
        """Waiting jobs, most urgent first, then oldest first (the Queue sort key's order)."""
        kwargs: dict[str, Any] = {
            "TableName": self._queue_table,
            "KeyConditionExpression": "#status = :queued",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":queued": to_attribute(JobStatus.QUEUED.value)},
            "ScanIndexForward": True,
            "ConsistentRead": True,
            "Limit": page_size,
        }
        while True:
            page = self._db.query(**kwargs)
            for item in page.get("Items", []):
                yield QueueEntry.model_validate(from_item(item))
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    def slot_holders(self) -> set[str]:
        answer = self._db.get_item(TableName=self._queue_table, Key=_slots_key(), ConsistentRead=True)
        item = answer.get("Item")
        if not item or "holders" not in item:
            return set()
        return set(from_attribute(item["holders"]))

    def held_jobs(self, job_ids: Iterable[str]) -> dict[str, HeldJob]:
        """The Jobs items of ``job_ids`` that exist (at most 100 ids: the slot limit is far below)."""
        keys = [{"job_id": to_attribute(job_id)} for job_id in sorted(set(job_ids))]
        found: dict[str, HeldJob] = {}
        request: dict[str, Any] = {
            self._jobs_table: {
                "Keys": keys,
                "ConsistentRead": True,
                "ProjectionExpression": "job_id, user_id, #status",
                "ExpressionAttributeNames": {"#status": "status"},
            }
        }
        while keys and request:
            answer = self._db.batch_get_item(RequestItems=request)
            for item in answer.get("Responses", {}).get(self._jobs_table, []):
                job = HeldJob.model_validate(from_item(item))
                found[job.job_id] = job
            request = answer.get("UnprocessedKeys") or {}
        return found

    # --- writes -----------------------------------------------------------------------------------

    def claim(self, entry: QueueEntry, max_running: int) -> ClaimOutcome:
        """One transaction: take a running slot, dequeue the job, check it is still promotable."""
        job = to_attribute(entry.job_id)
        try:
            self._db.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._queue_table,
                            "Key": _slots_key(),
                            "UpdateExpression": "ADD holders :job",
                            "ConditionExpression": (
                                "(attribute_not_exists(holders) OR size(holders) < :max) "
                                "AND NOT contains(holders, :job_id)"
                            ),
                            "ExpressionAttributeValues": {
                                ":job": {"SS": [entry.job_id]},
                                ":job_id": job,
                                ":max": to_attribute(max_running),
                            },
                            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                        }
                    },
                    {
                        "Delete": {
                            "TableName": self._queue_table,
                            "Key": {
                                "status": to_attribute(JobStatus.QUEUED.value),
                                "queue_key": to_attribute(entry.queue_key),
                            },
                            "ConditionExpression": "attribute_exists(queue_key)",
                        }
                    },
                    {
                        "ConditionCheck": {
                            "TableName": self._jobs_table,
                            "Key": {"job_id": job},
                            "ConditionExpression": (
                                "#status = :queued AND attribute_not_exists(cancel_requested_at)"
                            ),
                            "ExpressionAttributeNames": {"#status": "status"},
                            "ExpressionAttributeValues": {":queued": to_attribute(JobStatus.QUEUED.value)},
                            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                        }
                    },
                ]
            )
        except ClientError as error:
            reasons = cancellation_reasons(error)
            if reasons is None:
                raise
            return claim_outcome(entry.job_id, reasons)
        return ClaimOutcome.CLAIMED

    def remove_entry(self, entry: QueueEntry) -> None:
        """Delete a leftover Queue item (idempotent)."""
        self._db.delete_item(
            TableName=self._queue_table,
            Key={"status": to_attribute(JobStatus.QUEUED.value), "queue_key": to_attribute(entry.queue_key)},
        )

    def release_slot(self, job_id: str) -> bool:
        """Free ``job_id``'s slot; False when it was already free (release happens at most once)."""
        try:
            self._db.update_item(
                TableName=self._queue_table,
                Key=_slots_key(),
                UpdateExpression="DELETE holders :job",
                ConditionExpression="contains(holders, :job_id)",
                ExpressionAttributeValues={":job": {"SS": [job_id]}, ":job_id": to_attribute(job_id)},
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True


class LifecycleExecutions:
    """The job lifecycle state machine's executions, one per job, named by the job id."""

    def __init__(self, stepfunctions: Any, state_machine_arn: str) -> None:
        self._sfn = stepfunctions
        self._arn = state_machine_arn

    def start(self, job_id: str, user_id: str) -> StartOutcome:
        try:
            self._sfn.start_execution(
                stateMachineArn=self._arn, name=job_id, input=execution_input(job_id, user_id)
            )
        except ClientError as error:
            if error_code(error) == "ExecutionAlreadyExists":
                return StartOutcome.ALREADY_EXISTS
            raise
        return StartOutcome.STARTED

    def execution_arn(self, job_id: str) -> str:
        # arn:aws:states:<region>:<account>:stateMachine:<name> -> ...:execution:<name>:<execution>
        prefix, _, name = self._arn.rpartition(":stateMachine:")
        return f"{prefix}:execution:{name}:{job_id}"

    def is_running(self, job_id: str) -> bool:
        """True while the job's execution runs; False when it ended or was never started."""
        try:
            answer = self._sfn.describe_execution(executionArn=self.execution_arn(job_id))
        except ClientError as error:
            if error_code(error) == "ExecutionDoesNotExist":
                return False
            raise
        return answer.get("status") == "RUNNING"
