"""Models of the queue promoter: its settings, the Jobs stream images it reads and its outcomes.

Names follow docs/data-model.md ("Queue table", "Job lifecycle protocol" step 2).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from functions.common.settings import (
    ConcurrencySettings,
    JobsTableSettings,
    LifecycleSettings,
    QueueTableSettings,
)

QUEUED = "QUEUED"
RUNNING = "RUNNING"
SLOTS_PARTITION = "SLOTS"
SLOTS_SORT_KEY = "RUNNING"

JobStatus = Literal["QUEUED", "RUNNING", "COMPLETED", "FAILED", "BUDGET_EXCEEDED", "CANCELLED"]


class PromoterSettings(JobsTableSettings, QueueTableSettings, ConcurrencySettings, LifecycleSettings):
    """Everything the promoter needs: both tables, the slot limit and the lifecycle to start."""


# --- stream images ---------------------------------------------------------------------------------


class JobImage(BaseModel):
    """The part of a Jobs item (stream image) the promoter looks at."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    job_id: str
    # Optional: a write that lands after the job's deletion can recreate a bare item (job_id and
    # slot_released_at only). A status, when present, must be one of the six.
    status: JobStatus | None = None
    slot_released_at: str | None = None


class JobChange(BaseModel):
    """One Jobs stream record, reduced to what decides whether the promoter runs."""

    model_config = ConfigDict(frozen=True)

    event_name: Literal["INSERT", "MODIFY", "REMOVE"]
    new: JobImage | None = None
    old: JobImage | None = None

    @classmethod
    def from_images(
        cls, event_name: str, new_image: dict[str, Any] | None, old_image: dict[str, Any] | None
    ) -> JobChange:
        return cls.model_validate(
            {
                "event_name": event_name,
                "new": new_image or None,
                "old": old_image or None,
            }
        )

    @property
    def triggers_promotion(self) -> bool:
        """A job was queued, or a running slot was released (docs/data-model.md, step 2)."""
        if self.new is None:  # REMOVE
            return False
        if self.event_name == "INSERT" and self.new.status == QUEUED:
            return True
        released_before = self.old.slot_released_at if self.old is not None else None
        return self.new.slot_released_at is not None and self.new.slot_released_at != released_before


# --- stored rows ----------------------------------------------------------------------------------


class QueueEntry(BaseModel):
    """A waiting job's Queue item (``status = QUEUED``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Literal["QUEUED"]
    queue_key: str
    job_id: str
    user_id: str


class HeldJob(BaseModel):
    """The part of a slot holder's Jobs item the promoter needs to recover it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    job_id: str
    user_id: str | None = None
    status: JobStatus | None = None  # None: a bare item recreated after deletion, i.e. gone


# --- outcomes -------------------------------------------------------------------------------------


class ClaimOutcome(Enum):
    """How one claim transaction ended (docs/data-model.md, step 2)."""

    CLAIMED = "claimed"
    # The SLOTS condition failed and the job is not a holder: every slot is taken. Stop the pass.
    SLOTS_FULL = "slots_full"
    # The job already holds a slot, or its Queue item is gone: another promoter (or the
    # cancellation state machine) got there first. Next candidate.
    TAKEN = "taken"
    # The job is QUEUED with a cancellation request: it is never promoted. Remove its Queue item
    # (the cancellation state machine's own delete is unconditional), next candidate.
    CANCEL_PENDING = "cancel_pending"
    # The job no longer exists or is no longer QUEUED: its Queue item is a leftover. Remove, next.
    STALE = "stale"


class StartOutcome(Enum):
    STARTED = "started"
    # An execution with this name exists already (running with the same input, or closed).
    ALREADY_EXISTS = "already_exists"


@dataclass
class PromotionReport:
    """What one promotion pass did, for logs and tests."""

    promoted: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    stopped_on_full_slots: bool = False


def execution_input(job_id: str, user_id: str) -> str:
    """The lifecycle input. Byte-for-byte stable, so StartExecution by name stays idempotent."""
    return json.dumps({"job_id": job_id, "user_id": user_id}, separators=(",", ":"), sort_keys=True)
