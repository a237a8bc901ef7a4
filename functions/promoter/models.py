"""Models of the queue promoter: its settings, the Jobs stream images it reads and its outcomes.

Names follow docs/data-model.md ("Queue table", "Job lifecycle protocol" step 2).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from aws_lambda_powertools.utilities.parser.models import (
    DynamoDBStreamChangedRecordModel,
    DynamoDBStreamRecordModel,
)
from pydantic import BaseModel, ConfigDict

from functions.common.settings import (
    ConcurrencySettings,
    JobsTableSettings,
    LifecycleSettings,
    QueueTableSettings,
)
from functions.common.status import JobStatus

SLOTS_PARTITION = "SLOTS"
SLOTS_SORT_KEY = "RUNNING"


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


class JobImages(DynamoDBStreamChangedRecordModel):
    NewImage: JobImage | None = None
    OldImage: JobImage | None = None


class JobStreamRecord(DynamoDBStreamRecordModel):
    """One Jobs stream record, its images parsed as ``JobImage`` by the batch processor."""

    dynamodb: JobImages

    @property
    def triggers_promotion(self) -> bool:
        """A job was queued, or a running slot was released (docs/data-model.md, step 2)."""
        new, old = self.dynamodb.NewImage, self.dynamodb.OldImage
        if new is None:  # REMOVE
            return False
        if self.eventName == "INSERT" and new.status is JobStatus.QUEUED:
            return True
        released_before = old.slot_released_at if old is not None else None
        return new.slot_released_at is not None and new.slot_released_at != released_before


# --- stored rows ----------------------------------------------------------------------------------


class QueueEntry(BaseModel):
    """A waiting job's Queue item (``status = QUEUED``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Literal[JobStatus.QUEUED]
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
