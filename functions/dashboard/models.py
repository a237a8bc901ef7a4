"""Dashboard response models. Every ``Decimal`` (money, percentages) is an exact JSON number, as in
the jobs API (see ``functions.common.money``); counts are JSON integers."""

from __future__ import annotations

from pydantic import Field

from functions.common.models import DeferredModel
from functions.common.money import DecimalNumber
from functions.common.status import JobStatus


class Progress(DeferredModel):
    records_generated: int
    target_records: int
    percentage: DecimalNumber = Field(description="0..100, two decimals.")


class CostBreakdown(DeferredModel):
    bedrock: DecimalNumber
    fargate: DecimalNumber
    s3: DecimalNumber
    total: DecimalNumber


class Budget(DeferredModel):
    limit: DecimalNumber
    used: DecimalNumber
    remaining: DecimalNumber = Field(description="limit - used, never below 0.")
    percentage_used: DecimalNumber = Field(
        description="used / limit * 100, two decimals; may pass 100 by at most one unit of work."
    )


class Timing(DeferredModel):
    created_at: str
    started_at: str | None = None
    completed_at: str | None = None
    estimated_completion: str | None = Field(
        default=None,
        description=(
            "RUNNING with progress: extrapolated from the rate since started_at. Terminal: "
            "completed_at. Otherwise null."
        ),
    )


class DashboardResponse(DeferredModel):
    job_id: str
    status: JobStatus
    progress: Progress
    cost: CostBreakdown
    budget: Budget
    timing: Timing
    tokens_used: int
