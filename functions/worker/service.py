"""Generating one job: from a work item to parts, cost deltas, an export and a result.

The rules (docs/data-model.md, docs/worker-contract.md):

- Before each batch the job is read (consistent): a cancellation request ends the job as
  ``JobCancelled``; the rollup's ``budget_exceeded`` marker, or the cost this worker has committed
  reaching ``budget_limit``, ends it as ``BudgetExceeded``. So at most one batch runs past a cancel.
- Inside a batch up to N records are in flight at once (N is the adaptive window of the template's
  models, functions/worker/concurrency.py); the steps of one record run in order. Records are
  admitted in position order, each with its seed record read in order, and the batch is assembled
  in position order, so ids, order and the part are those of a one-at-a-time run.
- Budget: a record is admitted only while the cost committed so far (earlier batches, this batch's
  finished records and its Fargate/S3 share so far) plus the estimated cost of the records in
  flight is below ``budget_limit`` (the estimate is this run's average per record, or the price
  table's worst case before the first record finishes). Once the committed cost itself reaches
  the budget the batch is cut short, committed, and the job ends as ``BudgetExceeded``. So the
  overshoot is at most the cost of the records that were in flight (at most N).
- A batch commits in this order: its part (``part-NNNNN.jsonl``), then its CostTracking delta
  (``record_id = "{batch:08d}"``, written once), then the checkpoint. A restarted worker resumes at
  the checkpoint's next batch; if that batch's delta already exists its part was written before it,
  so the batch is adopted as is. Parts are rewritten whole and record ids are derived from the job
  and position, so a batch redone after a crash never duplicates records, and a delta is never
  counted twice.
- A prompt that breaks the sandbox or a limit, or that the model refuses, fails that record only:
  it is written to ``jobs/{job_id}/errors/part-NNNNN.jsonl``, counted in the delta
  (``records_failed``) and in the result. A batch in which every record fails stops the job.
- Work abandoned before it committed (shutdown, a crash) is not billed: the user pays for the
  batches that were delivered, each exactly once.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from functions.common.clock import now, to_iso
from functions.common.observability import logger
from functions.worker.concurrency import ConcurrencyController
from functions.worker.exporters import Exporter
from functions.worker.models import (
    Checkpoint,
    GeneratedRecord,
    JobControl,
    JobResult,
    Outcome,
    RecordFailure,
    StepResult,
    Usage,
    WorkItem,
)
from functions.worker.pricing import FargatePrice, ModelPrice, UnknownModelError, resolve_model, s3_cost
from functions.worker.providers import DEFAULT_MAX_TOKENS, ModelCallError, ModelProvider, estimate_tokens
from functions.worker.rendering import PromptRenderer, RenderError
from functions.worker.repository import (
    EXPORT_RECORD_ID,
    CostStore,
    JobStore,
    OutputStore,
    SeedFileError,
    batch_record_id,
    quantize,
)
from functions.worker.seeds import EmptySeedFileError, SeedCursor, SeedSource

COST_TTL_DAYS = 90
# Errors reported with SendTaskFailure; the lifecycle maps the first two to their own statuses.
BUDGET_EXCEEDED = "BudgetExceeded"
JOB_CANCELLED = "JobCancelled"
TEMPLATE_NOT_FOUND = "TemplateNotFound"
INVALID_TEMPLATE = "InvalidTemplate"
SEED_DATA_ERROR = "SeedDataError"
GENERATION_FAILED = "GenerationFailed"


class TemplateSource(Protocol):
    def get_version(self, template_id: str, version: int | None = None) -> Any: ...


@dataclass
class StopSignal:
    """Why the worker should stop what it is doing now (set from signal handlers and threads)."""

    reason: str | None = None

    def request(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason

    @property
    def requested(self) -> bool:
        return self.reason is not None


@dataclass(frozen=True)
class Step:
    id: str
    prompt: str
    model: ModelPrice


@dataclass
class _Batch:
    started: float
    opens_at_start: int
    records: list[GeneratedRecord] = field(default_factory=list)
    failures: list[RecordFailure] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    bedrock: Decimal = Decimal(0)
    models: set[str] = field(default_factory=set)
    cut_by_budget: bool = False

    def add(self, outcome: _RecordOutcome) -> None:
        if outcome.record is not None:
            self.records.append(outcome.record)
        if outcome.failure is not None:
            self.failures.append(outcome.failure)
        self.tokens_in += outcome.tokens_in
        self.tokens_out += outcome.tokens_out
        self.bedrock += outcome.bedrock
        self.models |= outcome.models


@dataclass
class _RecordOutcome:
    """What one record came to; made by a record thread, merged in position order."""

    position: int
    record: GeneratedRecord | None = None
    failure: RecordFailure | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    bedrock: Decimal = Decimal(0)
    models: set[str] = field(default_factory=set)


class _Flight:
    """The records of one batch in flight: how many, what finished, the first crash."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.in_flight = 0
        self.outcomes: list[_RecordOutcome] = []
        self.finished_cost = Decimal(0)
        self.error: BaseException | None = None

    def launched(self) -> None:
        with self.changed:
            self.in_flight += 1

    def landed(self, outcome: _RecordOutcome | None, error: BaseException | None) -> None:
        with self.changed:
            self.in_flight -= 1
            if outcome is not None:
                self.outcomes.append(outcome)
                self.finished_cost += outcome.bedrock
            if error is not None and self.error is None:
                self.error = error
            self.changed.notify_all()

    def wait_until_landed(self) -> None:
        with self.changed:
            self.changed.wait_for(lambda: self.in_flight == 0)


class _CostEstimate:
    """The Bedrock cost of one record: this run's average, or the price table's worst case
    (the prompt's text plus a full answer's worth of tokens for every step) before any finished."""

    def __init__(self, steps: list[Step]) -> None:
        self._worst = sum(
            (s.model.cost(estimate_tokens(s.prompt) + DEFAULT_MAX_TOKENS, DEFAULT_MAX_TOKENS) for s in steps),
            Decimal(0),
        )
        self._total = Decimal(0)
        self._records = 0

    def add(self, outcome: _RecordOutcome) -> None:
        self._total += outcome.bedrock
        self._records += 1

    def per_record(self) -> Decimal:
        return self._total / self._records if self._records else self._worst


def record_id(job_id: str, position: int) -> str:
    """Stable across restarts: a redone batch rewrites the same ids."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"plot-palette:job:{job_id}:record:{position}"))


class GenerationService:
    def __init__(
        self,
        *,
        jobs: JobStore,
        costs: CostStore,
        outputs: OutputStore,
        seeds: SeedSource,
        templates: TemplateSource,
        provider: ModelProvider,
        renderer: PromptRenderer,
        exporter: Exporter,
        fargate: FargatePrice,
        clock: Callable[[], datetime] = now,
        monotonic: Callable[[], float] = time.monotonic,
        cost_ttl_days: int = COST_TTL_DAYS,
        on_progress: Callable[[], None] = lambda: None,
        on_batch: Callable[[], None] = lambda: None,
        calls: ConcurrencyController | None = None,
    ) -> None:
        self._jobs = jobs
        self._costs = costs
        self._outputs = outputs
        self._seeds = seeds
        self._templates = templates
        # Model calls go through the worker's adaptive limiter (one per process, shared by jobs).
        self._calls = calls or ConcurrencyController(provider)
        self._pool = ThreadPoolExecutor(self._calls.policy.max_limit, thread_name_prefix="record")
        self._renderer = renderer
        self._exporter = exporter
        self._fargate = fargate
        self._clock = clock
        self._monotonic = monotonic
        self._cost_ttl_days = cost_ttl_days
        self._on_progress = on_progress
        self._on_batch = on_batch

    # ----------------------------------------------------------------- run

    def run(self, item: WorkItem, control: JobControl, stop: StopSignal | None = None) -> JobResult:
        """Generate the job's remaining batches and its export; never reports by itself."""
        stop = stop or StopSignal()
        try:
            steps = self._load_steps(item)
        except _JobError as error:
            return error.result()
        checkpoint = self._outputs.get_checkpoint(item.job_id) or Checkpoint(job_id=item.job_id)
        try:
            result, checkpoint = self._run_batches(item, steps, control, checkpoint, stop)
        except (SeedFileError, EmptySeedFileError) as error:
            return JobResult(outcome=Outcome.FAILED, error=SEED_DATA_ERROR, cause=str(error))
        if result is not None:
            return result
        if stop.requested:
            return JobResult(outcome=Outcome.ABANDONED, cause=stop.reason)
        return self._export(item, steps, checkpoint)

    def _run_batches(
        self, item: WorkItem, steps: list[Step], control: JobControl, checkpoint: Checkpoint, stop: StopSignal
    ) -> tuple[JobResult | None, Checkpoint]:
        """Batch after batch from the checkpoint; a result when the job must end early."""
        cursor = SeedCursor(self._seeds, item.seed_data_path)
        estimate = _CostEstimate(steps)
        first = item.batch_range(checkpoint.next_batch).start if checkpoint.next_batch else 0
        cursor.skip(min(first, item.num_records))
        known: JobControl | None = control  # the first batch uses the answer to recording the token
        for batch_index in range(checkpoint.next_batch, item.batch_count):
            current = known or self._jobs.read_control(item.job_id)
            known = None
            verdict = self._verdict(current, checkpoint)
            if verdict is not None:
                return verdict, checkpoint
            if stop.requested:
                return JobResult(outcome=Outcome.ABANDONED, cause=stop.reason), checkpoint
            assert current is not None  # a missing job got a verdict
            committed = self._committed(item, batch_index, cursor)
            if committed is None:
                budget = _Budget(current.budget_limit, checkpoint.usage.total, estimate)
                batch = self._generate(item, steps, batch_index, cursor, stop, budget)
                if batch is None:
                    return JobResult(outcome=Outcome.ABANDONED, cause=stop.reason), checkpoint
                committed = self._commit(item, batch_index, batch, cursor)
            checkpoint = self._advance(checkpoint, batch_index, committed)
            self._on_batch()
            result = self._after_batch(item, batch_index, committed, checkpoint, current)
            if result is not None:
                return result, checkpoint
        return None, checkpoint

    def _after_batch(
        self,
        item: WorkItem,
        batch_index: int,
        committed: tuple[Usage, str | None],
        checkpoint: Checkpoint,
        control: JobControl,
    ) -> JobResult | None:
        usage, first_error = committed
        if usage.records == 0 and usage.records_failed > 0:
            return JobResult(
                outcome=Outcome.FAILED,
                records_generated=checkpoint.usage.records,
                records_failed=checkpoint.usage.records_failed,
                error=GENERATION_FAILED,
                cause=f"every record of batch {batch_index} failed; first error: {first_error}",
            )
        if usage.records + usage.records_failed < len(item.batch_range(batch_index)):
            # Cut short because its cost reached the budget (also when adopted after a crash).
            return _budget_result(control.budget_limit, checkpoint)
        return None

    # ---------------------------------------------------------- job setup

    def _load_steps(self, item: WorkItem) -> list[Step]:
        template = self._templates.get_version(item.template_id, item.template_version)
        if template is None:
            raise _JobError(
                TEMPLATE_NOT_FOUND,
                f"template {item.template_id} version {item.template_version} does not exist",
            )
        steps = []
        for step in template.template_definition.steps:
            try:
                model = resolve_model(step.model, step.model_tier)
                self._renderer.compile(step.prompt)
            except (UnknownModelError, RenderError) as error:
                raise _JobError(INVALID_TEMPLATE, f"step {step.id!r}: {error}") from error
            steps.append(Step(id=step.id, prompt=step.prompt, model=model))
        if not steps:
            raise _JobError(INVALID_TEMPLATE, "the template has no steps")
        return steps

    def _verdict(self, control: JobControl | None, checkpoint: Checkpoint) -> JobResult | None:
        """Whether the job must stop before its next batch (cancelled, over budget, gone)."""
        done = {
            "records_generated": checkpoint.usage.records,
            "records_failed": checkpoint.usage.records_failed,
        }
        if control is None or not control.running:
            status = control.status if control else "deleted"
            return JobResult(outcome=Outcome.ABANDONED, cause=f"the job is {status}", **done)
        if control.cancel_requested_at:
            return JobResult(
                outcome=Outcome.FAILED,
                error=JOB_CANCELLED,
                cause=f"cancellation requested at {control.cancel_requested_at}",
                **done,
            )
        spent = checkpoint.usage.total
        if control.budget_exceeded or (control.budget_limit is not None and spent >= control.budget_limit):
            return _budget_result(control.budget_limit, checkpoint)
        return None

    # -------------------------------------------------------------- batch

    def _committed(
        self, item: WorkItem, batch_index: int, cursor: SeedCursor
    ) -> tuple[Usage, str | None] | None:
        """A batch an earlier attempt committed (its delta exists) but did not checkpoint."""
        usage = self._costs.get_delta(item.job_id, batch_record_id(batch_index))
        if usage is None:
            return None
        cursor.skip(len(item.batch_range(batch_index)))
        logger.info("Adopting a batch committed by an earlier attempt", job_id=item.job_id, batch=batch_index)
        return usage, None

    def _generate(
        self,
        item: WorkItem,
        steps: list[Step],
        batch_index: int,
        cursor: SeedCursor,
        stop: StopSignal,
        budget: _Budget,
    ) -> _Batch | None:
        """The batch's records, up to the adaptive window in flight at once; None if abandoned."""
        batch = _Batch(started=self._monotonic(), opens_at_start=cursor.opens)
        flight = _Flight()
        models = {step.model.model_id for step in steps}
        overhead = _Overhead(self._fargate, cursor, batch.opens_at_start)
        try:
            for position in item.batch_range(batch_index):
                admitted = self._admit(flight, models, stop, budget, overhead)
                if admitted is not True:
                    batch.cut_by_budget = admitted == _CUT
                    break
                seed_index, seed_record = cursor.next()
                flight.launched()
                self._pool.submit(self._record_task, flight, item, steps, position, seed_index, seed_record)
        finally:
            flight.wait_until_landed()  # nothing of a batch outlives it, even when it is abandoned
        if flight.error is not None:
            raise flight.error
        if stop.requested:
            return None  # abandon the batch: nothing of it is written or billed
        for outcome in sorted(flight.outcomes, key=lambda o: o.position):
            budget.estimate.add(outcome)
            batch.add(outcome)
        return batch

    def _admit(
        self, flight: _Flight, models: set[str], stop: StopSignal, budget: _Budget, overhead: _Overhead
    ) -> bool | str:
        """Wait until one more record may start: True, or why not (stop, a crash, the budget)."""
        with flight.changed:
            while True:
                if stop.requested or flight.error is not None:
                    return _STOP
                spent = budget.committed + overhead.now() + flight.finished_cost
                if budget.limit is not None and spent >= budget.limit:
                    return _CUT
                in_flight_cost = budget.estimate.per_record() * flight.in_flight
                below_budget = budget.limit is None or spent + in_flight_cost < budget.limit
                if below_budget and flight.in_flight < self._calls.window(models):
                    return True
                # A landing record frees a slot, moves the budget and may widen the window; the
                # timeout re-reads ``stop``, set from other threads without notifying.
                flight.changed.wait(_ADMIT_POLL_SECONDS)

    def _record_task(
        self,
        flight: _Flight,
        item: WorkItem,
        steps: list[Step],
        position: int,
        seed_index: int,
        seed_record: Mapping[str, Any],
    ) -> None:
        try:
            outcome = self._generate_record(item, steps, position, seed_index, seed_record)
        except BaseException as error:  # handed to the batch's thread, which raises it
            flight.landed(None, error)
            return
        flight.landed(outcome, None)
        self._on_progress()

    def _generate_record(
        self,
        item: WorkItem,
        steps: list[Step],
        position: int,
        seed_index: int,
        seed_record: Mapping[str, Any],
    ) -> _RecordOutcome:
        outcome = _RecordOutcome(position=position)
        outputs: dict[str, dict[str, str]] = {}
        context: dict[str, Any] = {**seed_record, "steps": outputs}
        results: dict[str, StepResult] = {}
        for step in steps:
            try:
                prompt = self._renderer.render(step.prompt, context)
                completion = self._calls.complete(step.model, prompt, seed_record)
            except (RenderError, ModelCallError) as error:
                outcome.failure = RecordFailure(
                    position=position, seed_index=seed_index, step_id=step.id, error=str(error)
                )
                return outcome
            outcome.tokens_in += completion.tokens_in
            outcome.tokens_out += completion.tokens_out
            outcome.bedrock += step.model.cost(completion.tokens_in, completion.tokens_out)
            outcome.models.add(step.model.model_id)
            results[step.id] = StepResult(prompt=prompt, output=completion.text, model=step.model.model_id)
            outputs[step.id] = {"prompt": prompt, "output": completion.text, "model": step.model.model_id}
        outcome.record = GeneratedRecord(
            id=record_id(item.job_id, position),
            job_id=item.job_id,
            seed_index=seed_index,
            created_at=to_iso(self._clock()),
            steps=results,
        )
        return outcome

    def _commit(
        self, item: WorkItem, batch_index: int, batch: _Batch, cursor: SeedCursor
    ) -> tuple[Usage, str | None]:
        self._outputs.put_part(item.job_id, batch_index, batch.records)
        puts = 2  # the part and the checkpoint
        if batch.failures:
            self._outputs.put_failures(item.job_id, batch_index, batch.failures)
            puts += 1
        usage = Usage(
            tokens_in=batch.tokens_in,
            tokens_out=batch.tokens_out,
            records=len(batch.records),
            records_failed=len(batch.failures),
            bedrock=quantize(batch.bedrock),
            fargate=quantize(self._fargate.cost(_seconds(self._monotonic() - batch.started))),
            s3=quantize(s3_cost(puts=puts, gets=cursor.opens - batch.opens_at_start)),
        )
        stored = self._put_delta(item, batch_record_id(batch_index), usage, ",".join(sorted(batch.models)))
        first_error = batch.failures[0].error if batch.failures else None
        return stored, first_error

    def _put_delta(self, item: WorkItem, record_id_: str, usage: Usage, model_id: str | None) -> Usage:
        moment = self._clock()
        ttl = int((moment + timedelta(days=self._cost_ttl_days)).timestamp())
        written = self._costs.put_delta(
            item.job_id, record_id_, usage, model_id=model_id or None, created_at=to_iso(moment), ttl=ttl
        )
        if written:
            return usage
        # An earlier attempt wrote this delta: that one is what the rollup counts.
        return self._costs.get_delta(item.job_id, record_id_) or usage

    def _advance(
        self, checkpoint: Checkpoint, batch_index: int, committed: tuple[Usage, str | None]
    ) -> Checkpoint:
        usage, first_error = committed
        advanced = Checkpoint(
            job_id=checkpoint.job_id,
            next_batch=batch_index + 1,
            usage=checkpoint.usage.plus(usage),
            first_error=checkpoint.first_error or first_error,
            updated_at=to_iso(self._clock()),
        )
        self._outputs.put_checkpoint(advanced)
        return advanced

    # ------------------------------------------------------------- export

    def _export(self, item: WorkItem, steps: list[Step], checkpoint: Checkpoint) -> JobResult:
        started = self._monotonic()
        result = self._exporter.export(
            item.job_id, item.output_format, item.batch_count, [s.id for s in steps], self._on_progress
        )
        usage = Usage(
            fargate=quantize(self._fargate.cost(_seconds(self._monotonic() - started))),
            s3=quantize(s3_cost(puts=result.puts, gets=result.gets)),
        )
        self._put_delta(item, EXPORT_RECORD_ID, usage, None)
        return JobResult(
            outcome=Outcome.SUCCEEDED,
            records_generated=result.records,
            records_failed=checkpoint.usage.records_failed,
            output_key=result.key,
        )


_STOP = "stop"
_CUT = "budget"
_ADMIT_POLL_SECONDS = 0.05


@dataclass
class _Budget:
    """What admission weighs: the budget, what earlier batches cost, the per-record estimate."""

    limit: Decimal | None
    committed: Decimal
    estimate: _CostEstimate


class _Overhead:
    """This batch's Fargate time and S3 requests so far (an estimate for admission; the delta
    bills them with the service's own clock when the batch commits)."""

    def __init__(self, fargate: FargatePrice, cursor: SeedCursor, opens_at_start: int) -> None:
        self._fargate = fargate
        self._cursor = cursor
        self._opens = opens_at_start
        self._started = time.monotonic()

    def now(self) -> Decimal:
        elapsed = _seconds(time.monotonic() - self._started)
        return self._fargate.cost(elapsed) + s3_cost(puts=2, gets=self._cursor.opens - self._opens)


def _budget_result(limit: Decimal | None, checkpoint: Checkpoint) -> JobResult:
    spent = checkpoint.usage.total
    return JobResult(
        outcome=Outcome.FAILED,
        error=BUDGET_EXCEEDED,
        cause=f"cost {spent} reached the budget of {limit}",
        records_generated=checkpoint.usage.records,
        records_failed=checkpoint.usage.records_failed,
    )


def _seconds(elapsed: float) -> Decimal:
    """Elapsed compute time in milliseconds' precision, as Decimal (never float arithmetic on money)."""
    return Decimal(max(0, round(elapsed * 1000))) / 1000


class _JobError(Exception):
    def __init__(self, error: str, cause: str) -> None:
        super().__init__(cause)
        self.error = error
        self.cause = cause

    def result(self) -> JobResult:
        return JobResult(outcome=Outcome.FAILED, error=self.error, cause=self.cause)
