"""The reconciler's rules: repair what the streams and the executions missed, once a minute.

One pass (docs/data-model.md, "Reconciler"):

1. Every RUNNING slot holder whose current lifecycle execution (``lifecycle_execution_name``) is
   gone or ended is **re-driven**: a conditional write counts the re-drive on the job
   (``lifecycle_redrives``, condition: still RUNNING and the count this pass read), then a new
   execution ``{job_id}-redrive-{n}`` starts. It enters "Mark job running", whose condition fails on
   a RUNNING job, and goes on through "Resume the job this execution already marked running": a new
   work item, which the worker resumes from its checkpoint (batches already committed are skipped,
   their cost records are written once), so no record is generated or billed twice. After
   ``max_lifecycle_redrives`` re-drives the job is marked FAILED instead (``JobLifecycleLost``,
   condition RUNNING), its slot released and ``Job Failed`` emitted.
   Before that, each RUNNING holder's cost deltas that are still not rolled up some time after
   they were written (their CostTracking stream record was lost: the local runtime's emulator
   keeps no stream across a restart) go through the rollup's own exactly-once transaction.
2. A promoter pass (``functions.promoter.service.PromoterService``): start the execution of holders
   still QUEUED, free the slots of terminal or deleted jobs without a running lifecycle, then admit
   QUEUED jobs into free slots (fair share).
3. The users' QUEUED sets (the jobs API's queued quota): an id whose job is gone, or left QUEUED
   more than ``queued_set_grace_seconds`` ago, had its stream record lost (the promoter removes it
   when the Jobs stream shows the change; a younger one is left to it) and is removed. A job never
   returns to QUEUED, so removing it can never free a place that is still taken. Items left with no
   id are deleted (on condition they are still empty).

Every write is conditional or idempotent, so a pass racing the stream's promoter, a lifecycle or
another pass changes nothing twice. Each repair is counted in the report (one metric each).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from functions.common.clock import now_iso, parse_iso, to_iso
from functions.common.events import EventPublisher, JobFailed
from functions.common.observability import logger
from functions.promoter.repository import QueueRepository
from functions.promoter.service import PromoterService
from functions.reconciler.models import (
    LIFECYCLE_LOST,
    ReconcileReport,
    RunningJob,
    lifecycle_execution_name,
)
from functions.reconciler.repository import LifecycleRuns, MissedCostDeltas, QueuedSets, ReconcilerJobs
from functions.rollup.models import RollupOutcome
from functions.rollup.service import CostRollupService


class ReconcilerService:
    def __init__(
        self,
        *,
        promoter: PromoterService,
        slots: QueueRepository,
        jobs: ReconcilerJobs,
        runs: LifecycleRuns,
        publisher: EventPublisher,
        costs: tuple[MissedCostDeltas, CostRollupService] | None = None,
        queued_sets: QueuedSets | None = None,
        queued_set_grace_seconds: int = 60,
        rollup_repair_after_seconds: int = 30,
        max_redrives: int = 3,
        redrive_grace_seconds: int = 120,
        promotion_repair_after_seconds: int = 60,
        clock: Callable[[], str] = now_iso,
    ) -> None:
        self._promoter = promoter
        self._slots = slots
        self._jobs = jobs
        self._runs = runs
        self._publisher = publisher
        self._costs = costs
        self._queued_sets = queued_sets
        self._queued_grace = queued_set_grace_seconds
        self._rollup_after = rollup_repair_after_seconds
        self._max_redrives = max_redrives
        self._grace = redrive_grace_seconds
        self._repair_after = promotion_repair_after_seconds
        self._clock = clock

    def reconcile(self) -> ReconcileReport:
        report = ReconcileReport()
        for job in self._jobs.running_jobs(self._slots.slot_holders()):
            self._roll_up_missed_costs(job, report)
            self._check_lifecycle(job, report)
        promotion = self._promoter.promote()
        report.recovered = promotion.recovered
        report.released = promotion.released
        report.cleaned = promotion.cleaned
        report.waited_seconds = promotion.waited_seconds
        # A job promoted soon after it was queued is the stream's pass racing this one, not a miss.
        report.promoted = [
            job_id
            for job_id in promotion.promoted
            if promotion.waited_seconds.get(job_id, 0) > self._repair_after
        ]
        self._prune_queued_sets(report)
        report.queued, report.running = self._slots.count_queued(), promotion.running
        logger.info("Reconciliation pass done", extra={"repairs": report.repairs(), "queued": report.queued})
        return report

    def _roll_up_missed_costs(self, job: RunningJob, report: ReconcileReport) -> None:
        if self._costs is None:
            return
        missed, rollup = self._costs
        cutoff = to_iso(parse_iso(self._clock()) - timedelta(seconds=self._rollup_after))
        for delta in missed.written_before(job.job_id, cutoff):
            if rollup.roll_up(delta) is RollupOutcome.APPLIED:
                report.rolled_up.append(f"{delta.job_id}/{delta.record_id}")

    def _prune_queued_sets(self, report: ReconcileReport) -> None:
        if self._queued_sets is None:
            return
        sets = self._queued_sets
        cutoff = to_iso(parse_iso(self._clock()) - timedelta(seconds=self._queued_grace))
        for user_id, job_ids in sets.sets():
            if not job_ids:
                sets.drop_if_empty(user_id)
                continue
            jobs = sets.jobs(job_ids)
            stale = {job_id for job_id in job_ids if job_id not in jobs or jobs[job_id].left_queue_by(cutoff)}
            if not stale:
                continue
            removed = sets.remove(user_id, stale)
            if removed:
                logger.warning(
                    "Removed ids of jobs no longer QUEUED from a user's queued set",
                    extra={"user_id": user_id, "job_ids": sorted(removed)},
                )
                report.unqueued.extend(sorted(removed))

    def _check_lifecycle(self, job: RunningJob, report: ReconcileReport) -> None:
        status = self._runs.status(job.execution_name)
        if status is not None and status not in LifecycleRuns.ENDED:
            return
        if self._recently_redriven(job):
            return
        if job.lifecycle_redrives >= self._max_redrives:
            self._fail(job, status, report)
        else:
            self._redrive(job, status, report)

    def _recently_redriven(self, job: RunningJob) -> bool:
        if job.lifecycle_redriven_at is None:
            return False
        elapsed = parse_iso(self._clock()) - parse_iso(job.lifecycle_redriven_at)
        return elapsed.total_seconds() < self._grace

    def _redrive(self, job: RunningJob, status: str | None, report: ReconcileReport) -> None:
        if job.user_id is None or not self._jobs.record_redrive(job, self._clock()):
            return  # finished meanwhile, or another pass re-drove it
        redrive = job.lifecycle_redrives + 1
        self._runs.start(lifecycle_execution_name(job.job_id, redrive), job.job_id, job.user_id, redrive)
        logger.warning(
            "Re-drove a RUNNING job whose lifecycle execution was lost",
            extra={"job_id": job.job_id, "execution_status": status or "missing", "redrive": redrive},
        )
        report.redriven.append(job.job_id)

    def _fail(self, job: RunningJob, status: str | None, report: ReconcileReport) -> None:
        now = self._clock()
        cause = (
            f"The job's lifecycle execution was lost ({status or 'missing'}) after "
            f"{job.lifecycle_redrives} re-drive(s); the reconciler gave up"
        )
        if job.user_id is None or not self._jobs.mark_lost(job, now, cause):
            return
        self._slots.release_slot(job.job_id)
        self._jobs.record_slot_released(job.job_id, now)
        self._publisher.publish(
            JobFailed(
                job_id=job.job_id, user_id=job.user_id, completed_at=now, error=LIFECYCLE_LOST, cause=cause
            )
        )
        logger.error("Marked a job FAILED: its lifecycle was lost too often", extra={"job_id": job.job_id})
        report.failed.append(job.job_id)
