"""The dashboard of one job, computed from the rolled-up fields of its Jobs item alone.

The cost rollup keeps ``records_generated``, ``tokens_used`` and ``cost`` on the Jobs item, so the
dashboard costs exactly one DynamoDB read (a GetItem) however many CostTracking records exist.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from functions.common.clock import now, parse_iso, to_iso
from functions.common.status import JobStatus
from functions.dashboard.models import Budget, CostBreakdown, DashboardResponse, Progress, Timing
from functions.jobs.access import JobAccess
from functions.jobs.models import JobRecord

_HUNDRED = Decimal(100)
_CENTS = Decimal("0.01")


def percentage(part: Decimal, whole: Decimal) -> Decimal:
    if whole <= 0:
        return Decimal("0.00")
    return (part * _HUNDRED / whole).quantize(_CENTS, rounding=ROUND_HALF_UP)


class DashboardService:
    def __init__(self, *, jobs: JobAccess, clock: Callable[[], datetime] = now) -> None:
        self._jobs = jobs
        self._clock = clock

    def dashboard(self, user_id: str, job_id: str) -> DashboardResponse:
        job = self._jobs.owned_job(user_id, job_id)
        used = job.cost.total
        return DashboardResponse(
            job_id=job.job_id,
            status=job.status,
            progress=Progress(
                records_generated=job.records_generated,
                target_records=job.num_records,
                percentage=min(
                    percentage(Decimal(job.records_generated), Decimal(job.num_records)), _HUNDRED
                ),
            ),
            cost=CostBreakdown(
                bedrock=job.cost.bedrock, fargate=job.cost.fargate, s3=job.cost.s3, total=job.cost.total
            ),
            budget=Budget(
                limit=job.budget_limit,
                used=used,
                remaining=max(job.budget_limit - used, Decimal(0)),
                percentage_used=percentage(used, job.budget_limit),
            ),
            timing=Timing(
                created_at=job.created_at,
                started_at=job.started_at,
                completed_at=job.completed_at,
                estimated_completion=self._estimate(job),
            ),
            tokens_used=job.tokens_used,
        )

    def _estimate(self, job: JobRecord) -> str | None:
        if not job.status.is_active:
            return job.completed_at
        if job.status is JobStatus.QUEUED or job.started_at is None or job.records_generated <= 0:
            return None
        started = parse_iso(job.started_at)
        elapsed = self._clock() - started
        remaining = max(job.num_records - job.records_generated, 0)
        return to_iso(self._clock() + elapsed * (remaining / job.records_generated))
