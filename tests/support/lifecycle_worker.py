"""A small worker that follows docs/worker-contract.md honestly, to drive the state machine tests.

It long-polls the work queue, records its task token on the job (conditional on RUNNING, reading
``cancel_requested_at`` and ``budget_exceeded`` in the same answer), checks cancellation and budget
before every batch, writes each batch's output object under ``jobs/{job_id}/outputs/`` and its cost
delta in CostTracking, heartbeats after every batch, and reports success, ``BudgetExceeded``,
``JobCancelled`` or a failure. It generates placeholder records instead of calling a model. Every
work item it receives must validate as the real worker's ``WorkItem``, and it reports the real
worker's error names (functions/worker/service.py), so the ASL is tested against the worker's
contract, not a copy of it.
A partition work item (``kind: partition``) covers batches ``first_batch..end_batch-1``; an export
work item (``kind: export``) joins the committed parts (those with a delta) in batch order into
``jobs/{job_id}/exports/dataset.jsonl`` and answers the final counts and the summed cost.

Tests steer it without threads: ``between_batches`` runs after each batch (a test requests a
cancellation or plays the cost rollup there), ``fail_after_batches`` makes it report a failure,
``die_after_batches`` makes it stop silently (no heartbeat, no answer), like a crashed worker.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from functions.common.clock import now_iso, parse_iso
from functions.worker.models import WorkItem
from functions.worker.service import BUDGET_EXCEEDED, EXPORT_INCOMPLETE, JOB_CANCELLED

BEDROCK_COST_PER_RECORD = Decimal("0.0015")
FARGATE_COST_PER_BATCH = Decimal("0.0002")
S3_COST_PER_BATCH = Decimal("0.000005")
TOKENS_IN_PER_RECORD = 120
TOKENS_OUT_PER_RECORD = 380
COST_RECORD_TTL_SECONDS = 90 * 24 * 3600
MODEL_ID = "test-worker.placeholder-model"
COST_PARTS = ("bedrock", "fargate", "s3")
# SendTask* answers for a task that has already ended (AWS: TaskTimedOut / InvalidToken;
# MiniStack: TaskDoesNotExist).
TASK_ENDED_ERRORS = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})


@dataclass
class WorkOutcome:
    """What the worker did with one work item."""

    job_id: str
    # "success", "exported", "BudgetExceeded", "JobCancelled", "<error>", "nothing" (job not RUNNING),
    # "died"
    reported: str
    batches_done: int
    records_generated: int
    accepted: bool = True  # False when Step Functions refused the answer (the task had already ended)


def cost_delta(batch_index: int, records: int) -> dict[str, Any]:
    """The CostTracking delta of one batch (attribute values as boto3's resource layer writes them)."""
    return {
        "record_id": f"{batch_index:08d}",
        "tokens_in": TOKENS_IN_PER_RECORD * records,
        "tokens_out": TOKENS_OUT_PER_RECORD * records,
        "records": records,
        "cost": {
            "bedrock": BEDROCK_COST_PER_RECORD * records,
            "fargate": FARGATE_COST_PER_BATCH,
            "s3": S3_COST_PER_BATCH,
        },
        "model_id": MODEL_ID,
    }


class LifecycleWorker:
    """One contract-following worker process; ``run_once`` handles at most one work item."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        *,
        sqs: Any,
        sfn: Any,
        dynamodb: Any,
        s3: Any,
        work_queue_url: str,
        jobs_table: str,
        cost_tracking_table: str,
        bucket: str,
        clock: Callable[[], str] = now_iso,
    ) -> None:
        self._sqs = sqs
        self._sfn = sfn
        self._ddb = dynamodb
        self._s3 = s3
        self._queue_url = work_queue_url
        self._jobs = jobs_table
        self._costs = cost_tracking_table
        self._bucket = bucket
        self._now = clock

    # ------------------------------------------------------------------ the loop

    def receive(self, wait_seconds: int = 10) -> tuple[dict[str, Any], str] | None:
        answer = self._sqs.receive_message(
            QueueUrl=self._queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=wait_seconds
        )
        messages = answer.get("Messages", [])
        if not messages:
            return None
        body = messages[0]["Body"]
        WorkItem.model_validate_json(body)  # what the ASL sends is what the real worker accepts
        return json.loads(body), messages[0]["ReceiptHandle"]

    def run_once(
        self,
        *,
        wait_seconds: int = 10,
        between_batches: Callable[[int], None] | None = None,
        fail_after_batches: int | None = None,
        die_after_batches: int | None = None,
    ) -> WorkOutcome:
        received = self.receive(wait_seconds)
        if received is None:
            raise AssertionError(f"no work item arrived within {wait_seconds} s")
        item, receipt = received
        outcome = self.process(
            item,
            between_batches=between_batches,
            fail_after_batches=fail_after_batches,
            die_after_batches=die_after_batches,
        )
        if outcome.reported != "died":
            self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=receipt)
        return outcome

    def process(
        self,
        item: dict[str, Any],
        *,
        between_batches: Callable[[int], None] | None = None,
        fail_after_batches: int | None = None,
        die_after_batches: int | None = None,
    ) -> WorkOutcome:
        job_id, token = item["job_id"], item["task_token"]
        if item.get("kind") == "export":
            return self.export(item)
        job = self.record_token(job_id, token)
        if job is None:  # no longer RUNNING: the lifecycle has moved on, nothing to report
            return WorkOutcome(job_id, "nothing", 0, 0)
        num_records, batch_size = int(item["num_records"]), int(item["batch_size"])
        first, end = (
            int(item.get("first_batch", 0)),
            int(item.get("end_batch", math.ceil(num_records / batch_size))),
        )
        records_done = 0
        for batch_index in range(first, end):
            done = batch_index - first
            stop = self._stop_reason(job)
            if stop:
                accepted = self._fail(token, stop, f"stopped before batch {batch_index}")
                return WorkOutcome(job_id, stop, done, records_done, accepted)
            if fail_after_batches is not None and done == fail_after_batches:
                accepted = self._fail(token, "GenerationError", f"the model failed on batch {batch_index}")
                return WorkOutcome(job_id, "GenerationError", done, records_done, accepted)
            if die_after_batches is not None and done == die_after_batches:
                return WorkOutcome(job_id, "died", done, records_done)
            count = min(batch_size, num_records - batch_index * batch_size)
            self.write_batch(job_id, batch_index, batch_index * batch_size, count)
            records_done += count
            if not self._answer(self._sfn.send_task_heartbeat, taskToken=token):
                return WorkOutcome(job_id, "nothing", done + 1, records_done, accepted=False)
            if between_batches is not None:
                between_batches(batch_index)
            job = self.read_job(job_id)
        stop = self._stop_reason(job)
        if stop:  # the last batch crossed the budget or a cancellation landed during it
            accepted = self._fail(token, stop, f"stopped after batch {end - 1}")
            return WorkOutcome(job_id, stop, end - first, records_done, accepted)
        output = {"records_generated": records_done, "output_key": None}
        accepted = self._answer(self._sfn.send_task_success, taskToken=token, output=json.dumps(output))
        return WorkOutcome(job_id, "success", end - first, records_done, accepted)

    def export(self, item: dict[str, Any]) -> WorkOutcome:
        """Join the committed parts in batch order into one file and answer the final counts and cost."""
        job_id, token = item["job_id"], item["task_token"]
        if self.read_job(job_id).get("status", {}).get("S") != "RUNNING":
            return WorkOutcome(job_id, "nothing", 0, 0)
        deltas = self.deltas(job_id)
        batches = sorted(int(rid) for rid in deltas if rid.isdigit())
        expected = math.ceil(int(item["num_records"]) / int(item["batch_size"]))
        if not item.get("partial") and batches != list(range(expected)):
            accepted = self._fail(token, EXPORT_INCOMPLETE, f"{expected - len(batches)} batches missing")
            return WorkOutcome(job_id, EXPORT_INCOMPLETE, 0, 0, accepted)
        lines: list[str] = []
        for batch_index in batches:
            part = self._s3.get_object(Bucket=self._bucket, Key=self.part_key(job_id, batch_index))
            lines += [line for line in part["Body"].read().decode().splitlines() if line]
        key = self.export_key(job_id) if lines else ""
        if lines:
            self._s3.put_object(Bucket=self._bucket, Key=key, Body=("\n".join(lines) + "\n").encode())
        cost = {
            part: sum((Decimal(d["cost"][part]) for d in deltas.values()), Decimal(0)) for part in COST_PARTS
        }
        output = {
            "records_generated": len(lines),
            "output_key": key,
            "files": 1 if lines else 0,
            "tokens_used": sum(int(d["tokens"]) for d in deltas.values()),
            "cost": {**{part: str(value) for part, value in cost.items()}, "total": str(sum(cost.values()))},
        }
        accepted = self._answer(self._sfn.send_task_success, taskToken=token, output=json.dumps(output))
        return WorkOutcome(job_id, "exported", len(batches), len(lines), accepted)

    def deltas(self, job_id: str) -> dict[str, dict[str, Any]]:
        """The job's CostTracking deltas by record id (one page: the tests' jobs are small)."""
        items = self._ddb.query(
            TableName=self._costs,
            KeyConditionExpression="job_id = :job",
            ExpressionAttributeValues={":job": {"S": job_id}},
            ConsistentRead=True,
        )["Items"]
        return {
            item["record_id"]["S"]: {
                "tokens": int(item["tokens_in"]["N"]) + int(item["tokens_out"]["N"]),
                "cost": {part: item["cost"]["M"][part]["N"] for part in COST_PARTS},
            }
            for item in items
        }

    # ------------------------------------------------------------------ contract steps

    def record_token(self, job_id: str, token: str) -> dict[str, Any] | None:
        """``SET task_token`` if still RUNNING; the job as it is now, or None when it is not RUNNING."""
        try:
            answer = self._ddb.update_item(
                TableName=self._jobs,
                Key={"job_id": {"S": job_id}},
                UpdateExpression="SET task_token = :token, updated_at = :now",
                ConditionExpression="#status = :running",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":token": {"S": token},
                    ":now": {"S": self._now()},
                    ":running": {"S": "RUNNING"},
                },
                ReturnValues="ALL_NEW",
            )
        except self._ddb.exceptions.ConditionalCheckFailedException:
            return None
        return dict(answer["Attributes"])

    def read_job(self, job_id: str) -> dict[str, Any]:
        answer = self._ddb.get_item(
            TableName=self._jobs,
            Key={"job_id": {"S": job_id}},
            ConsistentRead=True,
            ProjectionExpression="#status, cancel_requested_at, budget_exceeded",
            ExpressionAttributeNames={"#status": "status"},
        )
        return dict(answer.get("Item", {}))

    @staticmethod
    def output_prefix(job_id: str) -> str:
        return f"jobs/{job_id}/outputs/"

    @classmethod
    def part_key(cls, job_id: str, batch_index: int) -> str:
        return f"{cls.output_prefix(job_id)}part-{batch_index:05d}.jsonl"

    @staticmethod
    def export_key(job_id: str) -> str:
        return f"jobs/{job_id}/exports/dataset.jsonl"

    def write_batch(self, job_id: str, batch_index: int, first_record: int, count: int) -> None:
        lines = [
            json.dumps({"index": first_record + n, "text": f"placeholder record {first_record + n}"})
            for n in range(count)
        ]
        self._s3.put_object(
            Bucket=self._bucket,
            Key=self.part_key(job_id, batch_index),
            Body=("\n".join(lines) + "\n").encode(),
            ContentType="application/x-ndjson",
        )
        delta = cost_delta(batch_index, count)
        now = self._now()
        # A restarted worker rewrites the same batch: the delta is then already recorded.
        with contextlib.suppress(self._ddb.exceptions.ConditionalCheckFailedException):
            self._ddb.put_item(
                TableName=self._costs,
                Item={
                    "job_id": {"S": job_id},
                    "record_id": {"S": delta["record_id"]},
                    "tokens_in": {"N": str(delta["tokens_in"])},
                    "tokens_out": {"N": str(delta["tokens_out"])},
                    "records": {"N": str(delta["records"])},
                    "cost": {"M": {name: {"N": str(value)} for name, value in delta["cost"].items()}},
                    "created_at": {"S": now},
                    "model_id": {"S": delta["model_id"]},
                    "ttl": {"N": str(int(parse_iso(now).timestamp()) + COST_RECORD_TTL_SECONDS)},
                },
                ConditionExpression="attribute_not_exists(record_id)",
            )

    @staticmethod
    def _stop_reason(job: dict[str, Any]) -> str | None:
        if "cancel_requested_at" in job:
            return JOB_CANCELLED
        if job.get("budget_exceeded", {}).get("BOOL"):
            return BUDGET_EXCEEDED
        return None

    def _fail(self, token: str, error: str, cause: str) -> bool:
        return self._answer(self._sfn.send_task_failure, taskToken=token, error=error, cause=cause)

    @staticmethod
    def _answer(call: Callable[..., Any], **kwargs: Any) -> bool:
        """Send a heartbeat or a result; False when the task has already ended (cancelled, timed out)."""
        from botocore.exceptions import ClientError

        try:
            call(**kwargs)
        except ClientError as error:
            if error.response["Error"]["Code"] in TASK_ENDED_ERRORS:
                return False
            raise
        return True
