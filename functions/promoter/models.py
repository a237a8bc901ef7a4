"""Models of the queue promoter: its settings, the Jobs stream images it reads and its outcomes.

Names follow docs/data-model.md ("Queue table", "Job lifecycle protocol" step 2).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from aws_lambda_powertools.utilities.parser.models import (
    DynamoDBStreamChangedRecordModel,
    DynamoDBStreamRecordModel,
)
from pydantic import BaseModel, ConfigDict, Field

from functions.common.settings import (
    ConcurrencySettings,
    JobsTableSettings,
    LifecycleSettings,
    QueueTableSettings,
)
from functions.common.status import JobStatus

SLOTS_PARTITION = "SLOTS"
SLOTS_SORT_KEY = "RUNNING"
# On the SLOTS item, next to ``holders``: one string set of job ids per user with a slot.
USER_SLOTS_PREFIX = "user:"


class FairShareSettings(ConcurrencySettings):
    """The per-user cap on running slots (``MAX_RUNNING_JOBS_PER_USER``).

    Unset, it is ``max(1, MAX_RUNNING_JOBS // 2)``: one user can never take every slot.
    """

    max_running_jobs_per_user_setting: int | None = Field(
        default=None, ge=1, le=1000, validation_alias="MAX_RUNNING_JOBS_PER_USER"
    )

    @property
    def max_running_jobs_per_user(self) -> int:
        if self.max_running_jobs_per_user_setting is not None:
            return min(self.max_running_jobs_per_user_setting, self.max_running_jobs)
        return max(1, self.max_running_jobs // 2)


class PromoterSettings(JobsTableSettings, QueueTableSettings, FairShareSettings, LifecycleSettings):
    """Everything the promoter needs: both tables, the slot limits and the lifecycle to start."""


# --- stream images ---------------------------------------------------------------------------------


class JobImage(BaseModel):
    """The part of a Jobs item (stream image) the promoter looks at."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    job_id: str
    user_id: str | None = None
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

    @property
    def left_queue(self) -> JobImage | None:
        """The job's old image when this record took it out of QUEUED (promoted to RUNNING,
        cancelled or failed while queued, or deleted): its id leaves its user's QUEUED set."""
        new, old = self.dynamodb.NewImage, self.dynamodb.OldImage
        if old is None or old.status is not JobStatus.QUEUED or old.user_id is None:
            return None
        if new is not None and new.status is JobStatus.QUEUED:
            return None
        return old

    @property
    def finished_as(self) -> JobStatus | None:
        """The terminal status this record moved the job into, if it did (for the job metrics)."""
        new, old = self.dynamodb.NewImage, self.dynamodb.OldImage
        if new is None or new.status is None or new.status.is_active:
            return None
        before = old.status if old is not None else None
        return new.status if before != new.status else None


# --- stored rows ----------------------------------------------------------------------------------


class QueueEntry(BaseModel):
    """A waiting job's Queue item (``status = QUEUED``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Literal[JobStatus.QUEUED]
    queue_key: str
    job_id: str
    user_id: str

    # queue_key = "{10 - priority:02d}#{created_at}#{job_id}" (docs/data-model.md)
    @property
    def priority(self) -> int:
        return 10 - int(self.queue_key[:2])

    @property
    def created_at(self) -> str:
        return self.queue_key.split("#", 2)[1]

    @property
    def age_key(self) -> str:
        """Oldest first; the job id breaks ties."""
        return self.queue_key[3:]


def next_promotion(
    entries: Iterable[QueueEntry], running: Mapping[str, int], per_user_cap: int
) -> QueueEntry | None:
    """The waiting job to promote next (fair share, docs/data-model.md step 2).

    Among the jobs whose user runs fewer than ``per_user_cap`` jobs: the highest priority, then the
    user with the fewest running jobs, then the oldest.
    """
    eligible = [e for e in entries if running.get(e.user_id, 0) < per_user_cap]
    if not eligible:
        return None
    return min(eligible, key=lambda e: (-e.priority, running.get(e.user_id, 0), e.age_key))


def plan_promotions(
    entries: Iterable[QueueEntry], running: Mapping[str, int], free: int, per_user_cap: int
) -> list[QueueEntry]:
    """The jobs ``free`` slots go to, in order, if every claim succeeds."""
    pool, counts = list(entries), dict(running)
    plan: list[QueueEntry] = []
    while len(plan) < free:
        entry = next_promotion(pool, counts, per_user_cap)
        if entry is None:
            break
        plan.append(entry)
        pool.remove(entry)
        counts[entry.user_id] = counts.get(entry.user_id, 0) + 1
    return plan


@dataclass(frozen=True)
class SlotState:
    """The SLOTS item: every holder, and each user's holders (a superset until pruned)."""

    holders: frozenset[str]
    users: Mapping[str, frozenset[str]]

    def running_by_user(self, remaining: set[str]) -> dict[str, int]:
        counts = {user: len(jobs & remaining) for user, jobs in self.users.items()}
        return {user: n for user, n in counts.items() if n}

    def stale_user_slots(self, remaining: set[str]) -> dict[str, set[str]]:
        """Job ids in a user's set that hold no slot any more (released by the lifecycle)."""
        stale = {user: set(jobs - remaining) for user, jobs in self.users.items()}
        return {user: jobs for user, jobs in stale.items() if jobs}


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
    # The SLOTS condition failed on the user's own cap (a concurrent pass admitted one of theirs).
    USER_FULL = "user_full"
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
    # Seconds each promoted job waited in the queue (the PromotionDelay metric).
    waited_seconds: dict[str, float] = field(default_factory=dict)
    queued: int = 0  # waiting jobs seen by the pass
    running: int = 0  # slots held after the pass


def execution_input(job_id: str, user_id: str, **extra: Any) -> str:
    """The lifecycle input. Byte-for-byte stable, so StartExecution by name stays idempotent."""
    return json.dumps({"job_id": job_id, "user_id": user_id, **extra}, separators=(",", ":"), sort_keys=True)
