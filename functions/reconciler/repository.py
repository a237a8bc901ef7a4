"""DynamoDB and Step Functions access of the reconciler.

``ReconcilerJobs`` reads slot holders and writes the two repairs of a RUNNING job (a re-drive, or
FAILED), each on a condition; ``LifecycleRuns`` looks up and starts lifecycle executions by name;
``QueuedSets`` reads and prunes the users' QUEUED sets (``functions.common.queued_jobs``).
The slot itself is released through ``functions.promoter.repository.QueueRepository``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from botocore.exceptions import ClientError

from functions.common.dynamo import error_code, from_item, to_attribute
from functions.common.queued_jobs import JOB_IDS, USER_QUEUED_PARTITION, user_queued_key
from functions.common.status import JobStatus
from functions.promoter.models import execution_input
from functions.reconciler.models import LIFECYCLE_LOST, QueuedJobState, RunningJob
from functions.rollup.models import CostDelta

_CONDITION_FAILED = "ConditionalCheckFailedException"
_av = to_attribute
_error_code = error_code


class QueuedSets:
    """Every user's QUEUED set (Queue table, partition ``USER_QUEUED``) and the jobs in them."""

    def __init__(self, dynamodb: Any, queue_table: str, jobs_table: str) -> None:
        self._db = dynamodb
        self._queue = queue_table
        self._jobs = jobs_table

    def sets(self) -> Iterator[tuple[str, frozenset[str]]]:
        """``(user_id, job ids)`` of every user's item; an emptied item has no ids."""
        kwargs: dict[str, Any] = {
            "TableName": self._queue,
            "KeyConditionExpression": "#status = :partition",
            "ExpressionAttributeNames": {"#status": "status", "#ids": JOB_IDS},
            "ExpressionAttributeValues": {":partition": _av(USER_QUEUED_PARTITION)},
            "ProjectionExpression": "queue_key, #ids",
            "ConsistentRead": True,
        }
        while True:
            page = self._db.query(**kwargs)
            for item in page.get("Items", []):
                plain = from_item(item)
                yield str(plain["queue_key"]), frozenset(plain.get(JOB_IDS) or ())
            if not page.get("LastEvaluatedKey"):
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def jobs(self, job_ids: Iterable[str]) -> dict[str, QueuedJobState]:
        """The Jobs items of ``job_ids`` that exist (strongly consistent), by id."""
        keys = [{"job_id": _av(job_id)} for job_id in sorted(set(job_ids))]
        found: dict[str, QueuedJobState] = {}
        for start in range(0, len(keys), 100):
            request: dict[str, Any] = {
                self._jobs: {
                    "Keys": keys[start : start + 100],
                    "ConsistentRead": True,
                    "ProjectionExpression": "job_id, #status, started_at, completed_at, updated_at",
                    "ExpressionAttributeNames": {"#status": "status"},
                }
            }
            while request:
                answer = self._db.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self._jobs, []):
                    job = QueuedJobState.model_validate(from_item(item))
                    found[job.job_id] = job
                request = answer.get("UnprocessedKeys") or {}
        return found

    def remove(self, user_id: str, job_ids: set[str]) -> set[str]:
        """Take ``job_ids`` out of the user's set; returns those that were in it (so a repair the
        stream made meanwhile is not counted twice)."""
        try:
            answer = self._db.update_item(
                TableName=self._queue,
                Key=user_queued_key(user_id),
                UpdateExpression="DELETE #ids :stale",
                ConditionExpression="attribute_exists(#ids)",
                ExpressionAttributeNames={"#ids": JOB_IDS},
                ExpressionAttributeValues={":stale": {"SS": sorted(job_ids)}},
                ReturnValues="UPDATED_OLD",
            )
        except ClientError as error:
            if _error_code(error) == _CONDITION_FAILED:
                return set()  # emptied meanwhile
            raise
        before = from_item(answer.get("Attributes") or {}).get(JOB_IDS) or set()
        return set(job_ids) & set(before)

    def drop_if_empty(self, user_id: str) -> None:
        """Delete a user's item that holds no id (a create racing this re-creates it with its ADD)."""
        try:
            self._db.delete_item(
                TableName=self._queue,
                Key=user_queued_key(user_id),
                ConditionExpression="attribute_not_exists(#ids)",
                ExpressionAttributeNames={"#ids": JOB_IDS},
            )
        except ClientError as error:
            if _error_code(error) != _CONDITION_FAILED:
                raise


class ReconcilerJobs:
    def __init__(self, dynamodb: Any, jobs_table: str) -> None:
        self._db = dynamodb
        self._table = jobs_table

    def running_jobs(self, job_ids: Iterable[str]) -> list[RunningJob]:
        """The Jobs items of ``job_ids`` (slot holders, at most the slot limit) that are RUNNING."""
        keys = [{"job_id": _av(job_id)} for job_id in sorted(set(job_ids))]
        found: list[RunningJob] = []
        for start in range(0, len(keys), 100):
            request: dict[str, Any] = {
                self._table: {
                    "Keys": keys[start : start + 100],
                    "ConsistentRead": True,
                    "ProjectionExpression": (
                        "job_id, user_id, #status, lifecycle_redrives, lifecycle_redriven_at"
                    ),
                    "ExpressionAttributeNames": {"#status": "status"},
                }
            }
            while request:
                answer = self._db.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self._table, []):
                    job = RunningJob.model_validate(from_item(item))
                    if job.status is JobStatus.RUNNING:
                        found.append(job)
                request = answer.get("UnprocessedKeys") or {}
        return sorted(found, key=lambda job: job.job_id)

    def record_redrive(self, job: RunningJob, now: str) -> bool:
        """Count a re-drive; False when the job is no longer RUNNING or another pass counted it."""
        return self._update(
            job.job_id,
            "SET lifecycle_redrives = :next, lifecycle_redriven_at = :now, updated_at = :now",
            "#status = :running AND "
            + (
                "lifecycle_redrives = :seen"
                if job.lifecycle_redrives
                else "attribute_not_exists(lifecycle_redrives)"
            ),
            {
                ":next": _av(job.lifecycle_redrives + 1),
                ":now": _av(now),
                ":running": _av(JobStatus.RUNNING.value),
                **({":seen": _av(job.lifecycle_redrives)} if job.lifecycle_redrives else {}),
            },
            {"#status": "status"},
        )

    def mark_lost(self, job: RunningJob, now: str, cause: str) -> bool:
        """RUNNING -> FAILED with ``error = JobLifecycleLost``; False when it is no longer RUNNING."""
        return self._update(
            job.job_id,
            "SET #status = :failed, user_status = :user_status, completed_at = :now, updated_at = :now, "
            "#error = :error, #cause = :cause",
            "#status = :running",
            {
                ":failed": _av(JobStatus.FAILED.value),
                ":user_status": _av(f"{job.user_id}#FAILED"),
                ":now": _av(now),
                ":error": _av(LIFECYCLE_LOST),
                ":cause": _av(cause),
                ":running": _av(JobStatus.RUNNING.value),
            },
            {"#status": "status", "#error": "error", "#cause": "cause"},
        )

    def record_slot_released(self, job_id: str, now: str) -> None:
        """Announce the freed slot as the lifecycle does (the promoter reacts to it)."""
        self._update(
            job_id,
            "SET slot_released_at = :now, updated_at = :now",
            "attribute_exists(job_id)",
            {":now": _av(now)},
        )

    def _update(
        self,
        job_id: str,
        expression: str,
        condition: str,
        values: dict[str, Any],
        names: dict[str, str] | None = None,
    ) -> bool:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"job_id": _av(job_id)},
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
        if names:
            kwargs["ExpressionAttributeNames"] = names
        try:
            self._db.update_item(**kwargs)
        except ClientError as error:
            if _error_code(error) == _CONDITION_FAILED:
                return False
            raise
        return True


class LifecycleRuns:
    """Lifecycle executions by name (the job's first one is named by the job id)."""

    ENDED = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE"})

    def __init__(self, stepfunctions: Any, state_machine_arn: str) -> None:
        self._sfn = stepfunctions
        self._arn = state_machine_arn

    def execution_arn(self, name: str) -> str:
        prefix, _, machine = self._arn.rpartition(":stateMachine:")
        return f"{prefix}:execution:{machine}:{name}"

    def status(self, name: str) -> str | None:
        """The execution's status, or None when it does not exist (never started, or lost)."""
        try:
            answer = self._sfn.describe_execution(executionArn=self.execution_arn(name))
        except ClientError as error:
            if _error_code(error) == "ExecutionDoesNotExist":
                return None
            raise
        return str(answer.get("status"))

    def start(self, name: str, job_id: str, user_id: str, redrive: int) -> None:
        """Start the named execution; one that already exists is this same re-drive (idempotent)."""
        try:
            self._sfn.start_execution(
                stateMachineArn=self._arn,
                name=name,
                input=execution_input(job_id, user_id, redrive=redrive),
            )
        except ClientError as error:
            if _error_code(error) != "ExecutionAlreadyExists":
                raise


class MissedCostDeltas:
    """CostTracking items the rollup never marked ``rolled_up_at`` (their stream record was lost)."""

    def __init__(self, dynamodb: Any, cost_tracking_table: str) -> None:
        self._db = dynamodb
        self._table = cost_tracking_table

    def written_before(self, job_id: str, cutoff: str) -> list[CostDelta]:
        """The job's deltas written before ``cutoff`` and not rolled up. The filter runs after the
        read, so this reads the job's whole partition (small items: one page per ~5,000 batches)."""
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "job_id = :job",
            "FilterExpression": "attribute_not_exists(rolled_up_at) AND created_at < :cutoff",
            "ExpressionAttributeValues": {":job": _av(job_id), ":cutoff": _av(cutoff)},
            "ConsistentRead": True,
        }
        found: list[CostDelta] = []
        while True:
            page = self._db.query(**kwargs)
            for item in page.get("Items", []):
                found.append(CostDelta.model_validate(from_item(item)))
            if not page.get("LastEvaluatedKey"):
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
