"""DynamoDB and Step Functions access of the queue promoter.

``QueueRepository`` owns the Queue table's waiting items and the running-slot holder set, and reads
the Jobs items it needs; ``LifecycleExecutions`` starts and inspects lifecycle executions by name.
Every read that decides a write is strongly consistent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from botocore.exceptions import ClientError

from functions.common import queued_jobs
from functions.common.dynamo import (
    TRANSIENT_REASONS,
    cancellation_reasons,
    error_code,
    from_item,
    reason_code,
    to_attribute,
)
from functions.common.status import JobStatus
from functions.promoter.models import (
    SLOTS_PARTITION,
    SLOTS_SORT_KEY,
    USER_SLOTS_PREFIX,
    ClaimOutcome,
    HeldJob,
    QueueEntry,
    SlotState,
    StartOutcome,
    execution_input,
)


class TransientClaimError(Exception):
    """A claim transaction was cancelled for a transient reason (conflict, throttling)."""


class UnexpectedCancellation(Exception):
    """A claim transaction was cancelled for a reason the protocol does not foresee."""


def _slots_key() -> dict[str, Any]:
    return {"status": to_attribute(SLOTS_PARTITION), "queue_key": to_attribute(SLOTS_SORT_KEY)}


def user_slots_attribute(user_id: str) -> str:
    return f"{USER_SLOTS_PREFIX}{user_id}"


def _slot_refusal(job_id: str, slots: dict[str, Any], max_running: int | None) -> ClaimOutcome:
    """Why the SLOTS condition failed: this job holds a slot already (someone else claimed it), every
    slot is taken, or (with room left) the user's own cap is reached."""
    holders = slots.get("holders") or set()
    if job_id in holders:
        return ClaimOutcome.TAKEN
    if max_running is not None and len(holders) < max_running:
        return ClaimOutcome.USER_FULL
    return ClaimOutcome.SLOTS_FULL


def claim_outcome(job_id: str, reasons: list[Any], max_running: int | None = None) -> ClaimOutcome:
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
        return _slot_refusal(job_id, from_item(slot.get("Item") or {}), max_running)
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

    def count_queued(self) -> int:
        """How many jobs wait (a COUNT query: no items are returned)."""
        kwargs: dict[str, Any] = {
            "TableName": self._queue_table,
            "KeyConditionExpression": "#status = :queued",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":queued": to_attribute(JobStatus.QUEUED.value)},
            "Select": "COUNT",
        }
        total = 0
        while True:
            page = self._db.query(**kwargs)
            total += int(page.get("Count", 0))
            if not page.get("LastEvaluatedKey"):
                return total
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def slot_holders(self) -> set[str]:
        return set(self.slot_state().holders)

    def slot_state(self) -> SlotState:
        answer = self._db.get_item(TableName=self._queue_table, Key=_slots_key(), ConsistentRead=True)
        item = from_item(answer.get("Item") or {})
        users = {
            name.removeprefix(USER_SLOTS_PREFIX): frozenset(value)
            for name, value in item.items()
            if name.startswith(USER_SLOTS_PREFIX)
        }
        return SlotState(holders=frozenset(item.get("holders") or ()), users=users)

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

    def claim(self, entry: QueueEntry, max_running: int, per_user_cap: int | None = None) -> ClaimOutcome:
        """One transaction: take a running slot (within the user's cap), dequeue the job, check it is
        still promotable."""
        job = to_attribute(entry.job_id)
        cap = max_running if per_user_cap is None else per_user_cap
        try:
            self._db.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._queue_table,
                            "Key": _slots_key(),
                            "UpdateExpression": "ADD holders :job, #user :job",
                            "ConditionExpression": (
                                "(attribute_not_exists(holders) OR size(holders) < :max) "
                                "AND NOT contains(holders, :job_id) "
                                "AND (attribute_not_exists(#user) OR size(#user) < :user_max)"
                            ),
                            "ExpressionAttributeNames": {"#user": user_slots_attribute(entry.user_id)},
                            "ExpressionAttributeValues": {
                                ":job": {"SS": [entry.job_id]},
                                ":job_id": job,
                                ":max": to_attribute(max_running),
                                ":user_max": to_attribute(cap),
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
            return claim_outcome(entry.job_id, reasons, max_running)
        return ClaimOutcome.CLAIMED

    def prune_user_slots(self, stale: dict[str, set[str]]) -> None:
        """Drop released jobs from their users' sets (the lifecycle releases ``holders`` only).

        Safe without a condition: a job leaves ``holders`` once and is never claimed again.
        """
        for user_id, job_ids in sorted(stale.items()):
            self._db.update_item(
                TableName=self._queue_table,
                Key=_slots_key(),
                UpdateExpression="DELETE #user :jobs",
                ExpressionAttributeNames={"#user": user_slots_attribute(user_id)},
                ExpressionAttributeValues={":jobs": {"SS": sorted(job_ids)}},
            )

    def forget_queued(self, user_id: str, job_id: str) -> bool:
        """Take ``job_id`` out of its user's QUEUED set (idempotent); False when it was not there."""
        return queued_jobs.forget(self._db, self._queue_table, user_id, job_id)

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

    def exists(self, job_id: str) -> bool:
        try:
            self._sfn.describe_execution(executionArn=self.execution_arn(job_id))
        except ClientError as error:
            if error_code(error) == "ExecutionDoesNotExist":
                return False
            raise
        return True

    def is_running(self, job_id: str) -> bool:
        """True while the job's execution runs; False when it ended or was never started."""
        try:
            answer = self._sfn.describe_execution(executionArn=self.execution_arn(job_id))
        except ClientError as error:
            if error_code(error) == "ExecutionDoesNotExist":
                return False
            raise
        return answer.get("status") == "RUNNING"
