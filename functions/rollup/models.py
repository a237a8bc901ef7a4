"""Models of the cost rollup: settings, the CostTracking delta it applies and its outcomes.

Shapes follow docs/data-model.md ("CostTracking table", Jobs ``records_generated``,
``tokens_used``, ``cost``, ``budget_exceeded``). Money is ``Decimal`` end to end.
"""

from __future__ import annotations

from decimal import Decimal
from enum import Enum

from aws_lambda_powertools.utilities.parser.models import (
    DynamoDBStreamChangedRecordModel,
    DynamoDBStreamRecordModel,
)
from pydantic import BaseModel, ConfigDict, Field

from functions.common.settings import CostTrackingTableSettings, JobsTableSettings


class CostRollupSettings(JobsTableSettings, CostTrackingTableSettings):
    """The rollup reads the CostTracking stream and writes both tables."""


class CostBreakdown(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bedrock: Decimal = Field(ge=0, allow_inf_nan=False)
    fargate: Decimal = Field(ge=0, allow_inf_nan=False)
    s3: Decimal = Field(ge=0, allow_inf_nan=False)

    @property
    def total(self) -> Decimal:
        return self.bedrock + self.fargate + self.s3


class CostDelta(BaseModel):
    """One CostTracking item: the cost of one unit of work, never a running total."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=False)

    job_id: str = Field(min_length=1)
    record_id: str = Field(min_length=1)
    tokens_in: int = Field(ge=0)
    tokens_out: int = Field(ge=0)
    records: int = Field(ge=0)
    cost: CostBreakdown

    @property
    def tokens_used(self) -> int:
        return self.tokens_in + self.tokens_out


class CostDeltaImages(DynamoDBStreamChangedRecordModel):
    NewImage: CostDelta | None = None


class CostDeltaStreamRecord(DynamoDBStreamRecordModel):
    """One CostTracking stream record (NEW_IMAGE), its image parsed as a ``CostDelta``."""

    dynamodb: CostDeltaImages


class RollupOutcome(Enum):
    APPLIED = "applied"
    # rolled_up_at was already set: a replay of a delta applied before.
    ALREADY_APPLIED = "already_applied"
    # The job was deleted (cleanup); its costs have nowhere to go and that is not a failure.
    JOB_GONE = "job_gone"
    # The CostTracking item itself is gone (cleanup or TTL) before it was applied.
    DELTA_GONE = "delta_gone"
    # The lifecycle already wrote the job's final counts and cost (``totals_final_at``) from the
    # worker's sum of every delta: the delta is marked rolled up and not added again.
    TOTALS_FINAL = "totals_final"
