"""The queue promoter's rules: admit waiting jobs while a running slot is free.

One pass (docs/data-model.md, "Job lifecycle protocol" step 2):

1. Recover the slot holders. A holder whose job is still QUEUED gets its lifecycle execution
   started (idempotent by name: a previous pass may have claimed the slot and failed before or
   while starting it). A holder whose job is terminal or gone and whose execution is not running
   lost its lifecycle: its slot is released here, so no slot ever leaks.
2. Walk the Queue in order (priority, then oldest) and, for each candidate, claim it in one
   transaction; on success start its execution. Stop at the first "slots full", or as soon as
   the slots seen free after step 1 are all claimed (no transaction is spent learning that the
   slots are full: a slot released later writes ``slot_released_at``, which runs another pass).

Several passes run concurrently (one per stream shard batch, plus replays). Safety comes from the
conditions, not from the pass: a slot is taken only by the conditional ADD, which also refuses a
job that already holds one; the Queue item is deleted in the same transaction, so a job is claimed
at most once; StartExecution is idempotent by name.
"""

from __future__ import annotations

from functions.common.observability import logger
from functions.common.retry import RetryPolicy
from functions.common.status import JobStatus
from functions.promoter.models import ClaimOutcome, PromotionReport, QueueEntry
from functions.promoter.repository import LifecycleExecutions, QueueRepository, TransientClaimError


class PromoterService:
    def __init__(
        self,
        repository: QueueRepository,
        executions: LifecycleExecutions,
        max_running_jobs: int,
        *,
        # Full jitter: concurrent promoters contend on the one SLOTS item.
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - immutable
    ) -> None:
        self._repo = repository
        self._executions = executions
        self._max = max_running_jobs
        self._retry = retry

    def promote(self) -> PromotionReport:
        report = PromotionReport()
        free = self._max - len(self._recover_holders(report))
        report.stopped_on_full_slots = free <= 0
        for entry in self._repo.queued_entries() if free > 0 else ():
            outcome = self._claim(entry)
            if outcome is ClaimOutcome.CLAIMED:
                # A failure here propagates: the record fails, the stream retries, and the next
                # pass's recovery starts this holder's execution.
                self._executions.start(entry.job_id, entry.user_id)
                report.promoted.append(entry.job_id)
                free -= 1
                if free == 0:
                    # Every slot seen free is taken now; a slot released since is announced by
                    # its own slot_released_at record, whose pass will see it.
                    report.stopped_on_full_slots = True
                    break
            elif outcome is ClaimOutcome.SLOTS_FULL:
                report.stopped_on_full_slots = True
                break
            elif outcome in (ClaimOutcome.STALE, ClaimOutcome.CANCEL_PENDING):
                # Never promotable again. The cancellation state machine deletes the Queue item
                # unconditionally, so removing it first is safe and spares every later pass a
                # failed transaction.
                self._repo.remove_entry(entry)
                report.cleaned.append(entry.job_id)
            # TAKEN: another promoter (or the cancellation) got this job; next candidate.
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

    def _claim(self, entry: QueueEntry) -> ClaimOutcome:
        return self._retry.call(lambda: self._repo.claim(entry, self._max), retry_on=TransientClaimError)

    def _recover_holders(self, report: PromotionReport) -> set[str]:
        """Make every slot holder's lifecycle run; release slots whose lifecycle is gone.

        Returns the holders still holding a slot afterwards.
        """
        holders = self._repo.slot_holders()
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
                self._executions.start(job.job_id, job.user_id)
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
