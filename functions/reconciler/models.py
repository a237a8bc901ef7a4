"""Models of the reconciler: its settings, the running jobs it checks and what one pass repaired.

Names follow docs/data-model.md ("Reconciler").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from functions.common.settings import CostTrackingTableSettings, EventBusSettings
from functions.common.status import JobStatus
from functions.promoter.models import PromoterSettings

# The error a job gets when its lifecycle was lost more often than it may be re-driven.
LIFECYCLE_LOST = "JobLifecycleLost"


class ReconcilerSettings(PromoterSettings, EventBusSettings, CostTrackingTableSettings):
    """The promoter's settings, the bus (``Job Failed``), CostTracking (missed deltas) and the
    re-drive bounds."""

    # A RUNNING job whose lifecycle execution is gone gets at most this many new executions.
    max_lifecycle_redrives: int = Field(default=3, ge=0, le=20, validation_alias="MAX_LIFECYCLE_REDRIVES")
    # A job re-driven this recently is left alone (its new execution is starting).
    redrive_grace_seconds: int = Field(default=120, ge=0, validation_alias="REDRIVE_GRACE_SECONDS")
    # A job promoted by the reconciler after waiting longer than this counts as a repair: the stream
    # should have promoted it (a shorter wait is the stream's pass racing this one).
    promotion_repair_after_seconds: int = Field(
        default=60, ge=0, validation_alias="PROMOTION_REPAIR_AFTER_SECONDS"
    )
    # A cost delta still not rolled up this long after it was written: its stream record was lost.
    rollup_repair_after_seconds: int = Field(default=30, ge=0, validation_alias="ROLLUP_REPAIR_AFTER_SECONDS")


def lifecycle_execution_name(job_id: str, redrives: int) -> str:
    """The job's current lifecycle execution: named by the job id, then ``{job_id}-redrive-{n}``.

    Step Functions never reuses a name (90 days), so each re-drive needs a new one; the count is on
    the job (``lifecycle_redrives``), so the reconciler always knows which execution to look at.
    """
    return job_id if redrives == 0 else f"{job_id}-redrive-{redrives}"


class RunningJob(BaseModel):
    """The part of a slot holder's Jobs item the reconciler needs."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    job_id: str
    user_id: str | None = None
    status: JobStatus | None = None
    lifecycle_redrives: int = 0
    lifecycle_redriven_at: str | None = None

    @property
    def execution_name(self) -> str:
        return lifecycle_execution_name(self.job_id, self.lifecycle_redrives)


class QueuedJobState(BaseModel):
    """The part of a Jobs item the reconciler needs to tell whether it still counts as queued."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    job_id: str
    status: JobStatus | None = None  # None: a bare item recreated after deletion, i.e. gone
    started_at: str | None = None
    completed_at: str | None = None
    updated_at: str | None = None

    def left_queue_by(self, cutoff: str) -> bool:
        """True when the job is no longer QUEUED and left it at or before ``cutoff`` (ISO-8601)."""
        if self.status is None:
            return True
        if self.status is JobStatus.QUEUED:
            return False
        # A job leaves QUEUED when it starts, or ends without starting (cancelled, failed).
        left_at = self.started_at or self.completed_at or self.updated_at
        return left_at is None or left_at <= cutoff


@dataclass
class ReconcileReport:
    """What one pass repaired (each list is one metric) and what it saw."""

    promoted: list[str] = field(default_factory=list)  # QUEUED jobs the stream did not promote
    recovered: list[str] = field(default_factory=list)  # holders whose execution was never started
    released: list[str] = field(default_factory=list)  # slots of terminal or deleted jobs
    cleaned: list[str] = field(default_factory=list)  # Queue leftovers
    redriven: list[str] = field(default_factory=list)  # RUNNING jobs given a new execution
    failed: list[str] = field(default_factory=list)  # RUNNING jobs failed after too many re-drives
    rolled_up: list[str] = field(default_factory=list)  # "job_id/record_id" of deltas the stream missed
    # Ids left in a user's QUEUED set (the queued quota) after their job left QUEUED or was deleted
    unqueued: list[str] = field(default_factory=list)
    queued: int = 0
    running: int = 0
    waited_seconds: dict[str, float] = field(default_factory=dict)

    def repairs(self) -> dict[str, int]:
        return {
            "PromotedQueuedJobs": len(self.promoted),
            "RecoveredSlotHolders": len(self.recovered),
            "ReleasedSlots": len(self.released),
            "CleanedQueueItems": len(self.cleaned),
            "RedrivenJobs": len(self.redriven),
            "FailedLostJobs": len(self.failed),
            "RolledUpMissedCosts": len(self.rolled_up),
            "PrunedQueuedJobIds": len(self.unqueued),
        }

    @property
    def total(self) -> int:
        return sum(self.repairs().values())
