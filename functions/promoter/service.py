"""The queue promoter's rules: admit waiting jobs while a running slot is free.

One pass (docs/data-model.md, "Job lifecycle protocol" step 2):

1. Recover the slot holders. A holder whose job is still QUEUED gets its lifecycle execution
   started (idempotent by name: a previous pass may have claimed the slot and failed before or
   while starting it). A holder whose job is terminal or gone and whose execution is not running
   lost its lifecycle: its slot is released here, so no slot ever leaks.
   Then drop released jobs from the per-user holder sets (``prune_user_slots``).
2. Read the whole Queue and admit, one claim at a time, the job ``next_promotion`` picks (fair
   share: among users under their cap, priority first, then the user with the fewest running jobs,
   then the oldest); each claim is one transaction, and on success the job's execution starts. Stop
   at the first "slots full", when no user under the cap is waiting, or as soon as the slots seen
   free after step 1 are all claimed (no transaction is spent learning that the slots are full: a
   slot released later writes ``slot_released_at``, which runs another pass). The Queue is read
   whole because the fairest job of a priority may be its newest; the per-user quota on queued jobs
   (jobs API) bounds it.

Besides the pass, every Jobs stream record that takes a job out of QUEUED (to RUNNING, CANCELLED,
FAILED, or deleted) removes the job from its user's QUEUED set (``job_left_queue``), which the jobs
API's queued quota counts. The removal is a set DELETE on condition the id is there: a replay, a
retry or the reconciler's own repair removes nothing twice.

Several passes run concurrently (one per stream shard batch, plus replays). Safety comes from the
conditions, not from the pass: a slot is taken only by the conditional ADD, which also refuses a
job that already holds one; the Queue item is deleted in the same transaction, so a job is claimed
at most once; StartExecution is idempotent by name.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from functions.common.clock import now_iso, parse_iso
from functions.common.observability import logger
from functions.common.retry import RetryPolicy
from functions.common.status import JobStatus
from functions.promoter.models import ClaimOutcome, PromotionReport, QueueEntry, next_promotion
from functions.promoter.repository import LifecycleExecutions, QueueRepository, TransientClaimError


class PromoterService:
    def __init__(
        self,
        repository: QueueRepository,
        executions: LifecycleExecutions,
        max_running_jobs: int,
        *,
        max_running_jobs_per_user: int | None = None,
        # Full jitter: concurrent promoters contend on the one SLOTS item.
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - immutable
        clock: Callable[[], str] = now_iso,
    ) -> None:
        self._repo = repository
        self._executions = executions
        self._max = max_running_jobs
        self._per_user = max_running_jobs_per_user or max_running_jobs
        self._clock = clock
        self._retry = retry

    def job_left_queue(self, user_id: str, job_id: str) -> bool:
        """Free the job's place in its user's queued quota; False when it was already free."""
        return self._repo.forget_queued(user_id, job_id)

    def promote(self) -> PromotionReport:
        report = PromotionReport()
        state = self._repo.slot_state()
        remaining = self._recover_holders(set(state.holders), report)
        stale = state.stale_user_slots(remaining)
        if stale:
            self._repo.prune_user_slots(stale)
        running = state.running_by_user(remaining)
        free = self._max - len(remaining)
        if free > 0:
            free = self._admit(list(self._repo.queued_entries(page_size=100)), running, free, report)
        report.stopped_on_full_slots = free <= 0
        report.running = self._max - max(free, 0)
        logger.info(
            "Promotion pass done",
            extra={
                "promoted": report.promoted,
                "recovered": report.recovered,
                "released": report.released,
                "cleaned": report.cleaned,
                "stopped_on_full_slots": report.stopped_on_full_slots,
            },
        )
        return report

    def _admit(
        self, pool: list[QueueEntry], running: dict[str, int], free: int, report: PromotionReport
    ) -> int:
        """Claim fair-share picks until the free slots are taken; returns the slots still free."""
        report.queued = len(pool)
        now = parse_iso(self._clock())
        while free > 0:
            entry = next_promotion(pool, running, self._per_user)
            if entry is None:
                break
            pool.remove(entry)
            outcome = self._claim(entry)
            if outcome is ClaimOutcome.CLAIMED:
                # A failure here propagates: the record fails, the stream retries, and the next
                # pass's recovery starts this holder's execution.
                self._executions.start(entry.job_id, entry.user_id)
                report.promoted.append(entry.job_id)
                report.waited_seconds[entry.job_id] = _seconds_since(entry.created_at, now)
                running[entry.user_id] = running.get(entry.user_id, 0) + 1
                free -= 1
            elif outcome is ClaimOutcome.SLOTS_FULL:
                return 0
            elif outcome is ClaimOutcome.USER_FULL:
                # A concurrent pass admitted this user's jobs: none more of theirs in this pass.
                running[entry.user_id] = self._per_user
            elif outcome in (ClaimOutcome.STALE, ClaimOutcome.CANCEL_PENDING):
                # Never promotable again. The cancellation state machine deletes the Queue item
                # unconditionally, so removing it first is safe and spares every later pass a
                # failed transaction.
                self._repo.remove_entry(entry)
                report.cleaned.append(entry.job_id)
            # TAKEN: another promoter (or the cancellation) got this job; next candidate.
        return free

    def _claim(self, entry: QueueEntry) -> ClaimOutcome:
        return self._retry.call(
            lambda: self._repo.claim(entry, self._max, self._per_user), retry_on=TransientClaimError
        )

    def _recover_holders(self, holders: set[str], report: PromotionReport) -> set[str]:
        """Make every slot holder's lifecycle run; release slots whose lifecycle is gone.

        Returns the holders still holding a slot afterwards.
        """
        if not holders:
            return holders
        jobs = self._repo.held_jobs(holders)
        remaining = set(holders)
        for job_id in sorted(holders):
            job = jobs.get(job_id)
            if job is not None and job.status is JobStatus.RUNNING:
                continue
            if job is not None and job.status is JobStatus.QUEUED and job.user_id:
                # Claimed, not yet marked RUNNING: its execution is starting or was never started.
                # StartExecution answers success for a running execution with the same input too;
                # only a start where none existed is a repair.
                never_started = not self._executions.exists(job.job_id)
                self._executions.start(job.job_id, job.user_id)
                if never_started:
                    report.recovered.append(job_id)
                continue
            # Terminal or deleted. A running lifecycle still releases the slot itself (it writes the
            # terminal status before it releases); without one, nobody else ever will.
            if self._executions.is_running(job_id):
                continue
            if self._repo.release_slot(job_id):
                logger.warning("Released the slot of a job without a lifecycle", extra={"job_id": job_id})
                report.released.append(job_id)
            remaining.discard(job_id)
        return remaining


def _seconds_since(created_at: str, now: datetime) -> float:
    try:
        return max(0.0, (now - parse_iso(created_at)).total_seconds())
    except ValueError:
        return 0.0
