"""The cost rollup's rules: add each cost delta to its job exactly once, then check the budget.

Exactly once comes from the CostTracking item itself: the transaction that adds the delta to the
Jobs item also sets the delta's ``rolled_up_at`` on the condition that it is not set, so a replayed
stream record cannot add it twice. Once the lifecycle has written a job's final counts and cost
(``totals_final_at``, from the worker's sum of every delta, docs/data-model.md), a delta that
arrives later is marked rolled up without being added: the final totals already hold it, so
the first COMPLETED read already shows them (issue 14). The budget mark is its own conditional
write and runs after an applied delta and after a replayed one too, so a crash between the two
writes heals on the replay.
"""

from __future__ import annotations

from collections.abc import Callable

from functions.common.clock import now_iso
from functions.common.observability import logger
from functions.common.retry import RetryPolicy
from functions.rollup.models import CostDelta, RollupOutcome
from functions.rollup.repository import CostRepository, TransientRollupError


class CostRollupService:
    def __init__(
        self,
        repository: CostRepository,
        *,
        clock: Callable[[], str] = now_iso,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - immutable
    ) -> None:
        self._repo = repository
        self._clock = clock
        self._retry = retry

    def roll_up(self, delta: CostDelta) -> RollupOutcome:
        outcome = self._apply(delta)
        if outcome is RollupOutcome.TOTALS_FINAL:
            self._repo.mark_rolled_up(delta, self._clock())
            return outcome
        if outcome in (RollupOutcome.APPLIED, RollupOutcome.ALREADY_APPLIED):
            if self._repo.mark_budget_exceeded(delta.job_id, self._clock()):
                logger.info("Job reached its budget", extra={"job_id": delta.job_id})
        else:
            logger.info(
                "Cost delta skipped",
                extra={"job_id": delta.job_id, "record_id": delta.record_id, "outcome": outcome.value},
            )
        return outcome

    def _apply(self, delta: CostDelta) -> RollupOutcome:
        return self._retry.call(
            lambda: self._repo.apply_delta(delta, self._clock()), retry_on=TransientRollupError
        )
