"""DynamoDB access of the cost rollup: apply a delta exactly once, mark the budget reached."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from functions.common.dynamo import (
    TRANSIENT_REASONS,
    cancellation_reasons,
    error_code,
    reason_code,
    to_attribute,
)
from functions.rollup.models import CostDelta, RollupOutcome

# ``cost`` is a map the API creates with every part at 0 (docs/data-model.md); if_not_exists keeps a
# part that is missing from an older item from failing the rollup.
_COST_PARTS = ("bedrock", "fargate", "s3", "total")


class TransientRollupError(Exception):
    """The rollup transaction was cancelled for a transient reason (conflict, throttling)."""


class UnexpectedCancellation(Exception):
    """The rollup transaction was cancelled for a reason the protocol does not foresee."""


def rollup_outcome(delta: CostDelta, reasons: list[Any]) -> RollupOutcome:
    """Read a cancelled rollup transaction's reasons (CostTracking update, Jobs update)."""
    where = f"rollup of {delta.job_id}/{delta.record_id}"
    if len(reasons) != 2:
        raise UnexpectedCancellation(f"{where} cancelled without reasons: {reasons}")
    codes = {reason_code(r) for r in reasons}
    if codes & TRANSIENT_REASONS:
        raise TransientRollupError(f"{where}: {sorted(codes)}")
    if codes - {"None", "ConditionalCheckFailed"}:
        raise UnexpectedCancellation(f"{where}: {sorted(codes)}")
    tracking, job = reasons
    if reason_code(tracking) == "ConditionalCheckFailed":
        item = tracking.get("Item") or {}
        if "rolled_up_at" in item:
            return RollupOutcome.ALREADY_APPLIED
        return RollupOutcome.DELTA_GONE
    if "totals_final_at" in (job.get("Item") or {}):
        return RollupOutcome.TOTALS_FINAL
    return RollupOutcome.JOB_GONE


class CostRepository:
    def __init__(self, dynamodb: Any, cost_tracking_table: str, jobs_table: str) -> None:
        self._db = dynamodb
        self._cost_table = cost_tracking_table
        self._jobs_table = jobs_table

    def apply_delta(self, delta: CostDelta, now: str) -> RollupOutcome:
        """Mark the delta rolled up and add it to the job, in one transaction."""
        cost_sets = ", ".join(f"#cost.#{p} = if_not_exists(#cost.#{p}, :zero) + :{p}" for p in _COST_PARTS)
        amounts = {
            "bedrock": delta.cost.bedrock,
            "fargate": delta.cost.fargate,
            "s3": delta.cost.s3,
            "total": delta.cost.total,
        }
        try:
            self._db.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self._cost_table,
                            "Key": {
                                "job_id": to_attribute(delta.job_id),
                                "record_id": to_attribute(delta.record_id),
                            },
                            "UpdateExpression": "SET rolled_up_at = :now",
                            "ConditionExpression": (
                                "attribute_exists(record_id) AND attribute_not_exists(rolled_up_at)"
                            ),
                            "ExpressionAttributeValues": {":now": to_attribute(now)},
                            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._jobs_table,
                            "Key": {"job_id": to_attribute(delta.job_id)},
                            "UpdateExpression": (
                                f"ADD records_generated :records, tokens_used :tokens "
                                f"SET {cost_sets}, updated_at = :now"
                            ),
                            # The job's final totals, once written, already hold every delta.
                            "ConditionExpression": (
                                "attribute_exists(job_id) AND attribute_not_exists(totals_final_at)"
                            ),
                            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                            "ExpressionAttributeNames": {"#cost": "cost"} | {f"#{p}": p for p in _COST_PARTS},
                            "ExpressionAttributeValues": {
                                ":records": to_attribute(delta.records),
                                ":tokens": to_attribute(delta.tokens_used),
                                ":zero": to_attribute(Decimal(0)),
                                ":now": to_attribute(now),
                            }
                            | {f":{p}": to_attribute(amount) for p, amount in amounts.items()},
                        }
                    },
                ]
            )
        except ClientError as error:
            reasons = cancellation_reasons(error)
            if reasons is None:
                raise
            return rollup_outcome(delta, reasons)
        return RollupOutcome.APPLIED

    def mark_rolled_up(self, delta: CostDelta, now: str) -> bool:
        """Mark a delta rolled up without adding it (the job's totals are final); False if already."""
        try:
            self._db.update_item(
                TableName=self._cost_table,
                Key={"job_id": to_attribute(delta.job_id), "record_id": to_attribute(delta.record_id)},
                UpdateExpression="SET rolled_up_at = :now",
                ConditionExpression="attribute_exists(record_id) AND attribute_not_exists(rolled_up_at)",
                ExpressionAttributeValues={":now": to_attribute(now)},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def mark_budget_exceeded(self, job_id: str, now: str) -> bool:
        """Set ``budget_exceeded`` once ``cost.total >= budget_limit``; True when this call set it."""
        try:
            self._db.update_item(
                TableName=self._jobs_table,
                Key={"job_id": to_attribute(job_id)},
                UpdateExpression="SET budget_exceeded = :true, updated_at = :now",
                ConditionExpression=(
                    "attribute_exists(job_id) AND #cost.#total >= budget_limit "
                    "AND (attribute_not_exists(budget_exceeded) OR budget_exceeded = :false)"
                ),
                ExpressionAttributeNames={"#cost": "cost", "#total": "total"},
                ExpressionAttributeValues={
                    ":true": to_attribute(True),
                    ":false": to_attribute(False),
                    ":now": to_attribute(now),
                },
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True
