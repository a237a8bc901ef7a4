"""Generating one job: from a work item to parts, cost deltas, an export and a result.

The rules (docs/data-model.md, docs/worker-contract.md):

- Before each batch the job is read (consistent), and again after each commit while a batch is
  being admitted: a cancellation request ends the job as ``JobCancelled``; the rollup's
  ``budget_exceeded`` marker, or the cost this worker has committed reaching ``budget_limit``,
  ends it as ``BudgetExceeded``. Admission stops there; the records already admitted finish and
  are committed (they were paid for), so at most one batch's records run past either.
- Inside a job up to N records are in flight at once (N is the adaptive window of the template's
  models, functions/worker/concurrency.py); the steps of one record run in order. Records are
  admitted in position order, each with its seed record read in order, and batches overlap: the
  next batch's records are admitted while the previous batch's last ones are in flight, and each
  batch is committed, in order, once all its records have landed, assembled in position order.
  So ids, order, parts and deltas are those of a one-at-a-time run.
- Budget: once the cost spent so far (committed batches, landed records not committed yet, the
  Fargate time since the last commit) reaches ``budget_limit``, admission ends, the open batches
  are committed (the last one short) and the job ends as ``BudgetExceeded``. Below it a record is
  admitted only while spent + the S3 writes of committing the open batches + the estimated cost
  of the records in flight stays below the budget (the estimate is this run's average per record,
  or the price table's worst case before the first record lands); the first record of a run
  always goes. So the overshoot is at most the cost of the records in flight (at most N) plus
  those S3 writes.
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
- A partition work item generates its own range of batches from its own checkpoint
  (``checkpoints/partition-NNNNN.json``); batch indexes, part keys, delta ids and record ids are
  global, so partitions done by different workers, in any order, join into one job. The budget is
  read from the job's rolled-up cost (every partition's deltas), so each running partition runs at
  most its records in flight past it.
- The export work item joins the parts of the committed batches (those with a delta) in batch order
  into the files the job asked for, and answers the records in the files and the sum of every delta:
  the lifecycle writes those as the job's final counts and cost.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from jinja2 import Template

from functions.common.catalogue import ModelPrice, UnknownModelError, resolve_model
from functions.common.clock import now, to_iso
from functions.common.observability import logger
from functions.common.sizes import TASK_SHAPES
from functions.worker.concurrency import ConcurrencyController
from functions.worker.exporters import Exporter, ExportOptions
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
from functions.worker.pricing import FargatePrice, s3_cost
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
EXPORT_INCOMPLETE = "ExportIncomplete"
INVALID_EXPORT_CONFIG = "InvalidExportConfig"


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
    template: Template  # the prompt, compiled once for the job (rendered for every record)


@dataclass
class _Batch:
    """A batch assembled for its commit, from its records' outcomes in position order."""

    records: list[GeneratedRecord] = field(default_factory=list)
    failures: list[RecordFailure] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    bedrock: Decimal = Decimal(0)
    models: set[str] = field(default_factory=set)

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

    batch: int
    position: int
    record: GeneratedRecord | None = None
    failure: RecordFailure | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    bedrock: Decimal = Decimal(0)
    models: set[str] = field(default_factory=set)


@dataclass
class _OpenBatch:
    """A batch whose records are being admitted or are in flight, not yet committed."""

    index: int
    opens_at_start: int
    opens_at_end: int | None = None  # set once every record is admitted (or the budget cut it)
    launched: int = 0

    @property
    def admitted(self) -> bool:
        return self.opens_at_end is not None


class _Flight:
    """The job's records in flight, per batch; what landed and is not committed; the first crash.
    Every field is read and written under ``changed``."""

    def __init__(self, estimate: _CostEstimate) -> None:
        self.changed = threading.Condition()
        self.estimate = estimate
        self.in_flight = 0
        self._pending: dict[int, int] = {}
        self._landed: dict[int, list[_RecordOutcome]] = {}
        self.landed_cost = Decimal(0)  # of records landed in batches not committed yet
        self.error: BaseException | None = None

    def launched(self, batch: int) -> None:
        with self.changed:
            self.in_flight += 1
            self._pending[batch] = self._pending.get(batch, 0) + 1

    def landed(self, batch: int, outcome: _RecordOutcome | None, error: BaseException | None) -> None:
        with self.changed:
            self.in_flight -= 1
            self._pending[batch] -= 1
            if outcome is not None:
                self._landed.setdefault(batch, []).append(outcome)
                self.landed_cost += outcome.bedrock
                self.estimate.add(outcome)
            if error is not None and self.error is None:
                self.error = error
            self.changed.notify_all()

    def all_landed(self, batch: int) -> bool:
        return self._pending.get(batch, 0) == 0

    def take(self, batch: int) -> list[_RecordOutcome]:
        """The landed outcomes of a batch, in position order, handed over for its commit."""
        with self.changed:
            outcomes = sorted(self._landed.pop(batch, []), key=lambda o: o.position)
            self._pending.pop(batch, None)
            self.landed_cost -= sum((o.bedrock for o in outcomes), Decimal(0))
            return outcomes

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
        """Do one work item: a partition's batches, the export, or (kind "job") both; never reports."""
        stop = stop or StopSignal()
        try:
            steps = self._load_steps(item)
        except _JobError as error:
            return error.result()
        if item.kind == "export":
            return self._export_job(item, steps, control)
        checkpoint = self._outputs.get_checkpoint(item.job_id, item.partition) or Checkpoint(
            job_id=item.job_id, partition=item.partition, next_batch=item.batches.start
        )
        result = self._generate_batches(item, steps, control, checkpoint, stop)
        if isinstance(result, JobResult):
            return result
        if stop.requested:
            return JobResult(outcome=Outcome.ABANDONED, cause=stop.reason)
        if item.kind == "partition":
            return JobResult(
                outcome=Outcome.SUCCEEDED,
                records_generated=result.usage.records,
                records_failed=result.usage.records_failed,
            )
        return self._export_job(item, steps, control)

    def _generate_batches(
        self, item: WorkItem, steps: list[Step], control: JobControl, checkpoint: Checkpoint, stop: StopSignal
    ) -> Checkpoint | JobResult:
        """The item's batches from its checkpoint on: the last checkpoint, or why it stopped."""
        try:
            result, checkpoint = self._run_batches(item, steps, control, checkpoint, stop)
        except (SeedFileError, EmptySeedFileError) as error:
            return JobResult(outcome=Outcome.FAILED, error=SEED_DATA_ERROR, cause=str(error))
        return result or checkpoint

    def _run_batches(
        self, item: WorkItem, steps: list[Step], control: JobControl, checkpoint: Checkpoint, stop: StopSignal
    ) -> tuple[JobResult | None, Checkpoint]:
        """Batch after batch from the checkpoint; a result when the job must end early.

        Batches overlap: the next batch's records are admitted while the previous batch's last
        records are still in flight (so the window stays full across batch boundaries), and each
        batch is committed, in order, as soon as all of its records have landed.
        """
        run = _Run(
            item=item,
            steps=steps,
            models={step.model.model_id for step in steps},
            cursor=SeedCursor(self._seeds, item.seed_data_path),
            flight=_Flight(_CostEstimate(steps)),
            checkpoint=checkpoint,
            start=max(checkpoint.next_batch, item.batches.start),
            committed_at=self._monotonic(),
            overhead_since=time.monotonic(),
            fargate=self._fargate_for(item),
        )
        run.cursor.skip(min(item.batch_range(run.start).start, item.num_records))
        try:
            result = self._admit_batches(run, control, stop)
        finally:
            run.flight.wait_until_landed()  # nothing of a batch outlives the run, even abandoned
        if run.flight.error is not None:
            raise run.flight.error
        if stop.requested:
            # Abandoned: what is not committed is not written or billed; the next worker redoes it.
            return JobResult(outcome=Outcome.ABANDONED, cause=stop.reason), run.checkpoint
        while run.open:  # every admitted record was paid for: commit what is left, in order
            if run.open[-1].launched == 0:  # ended before its first record: nothing to commit
                run.open.pop()
                continue
            self._commit_oldest(run)
        ended = result or run.result
        if ended is not None and ended.outcome is Outcome.FAILED:
            usage = run.checkpoint.usage
            ended = ended.model_copy(
                update={"records_generated": usage.records, "records_failed": usage.records_failed}
            )
        return ended, run.checkpoint

    def _admit_batches(self, run: _Run, control: JobControl, stop: StopSignal) -> JobResult | None:
        known: JobControl | None = control  # the first batch uses the answer to recording the token
        for batch_index in range(run.start, run.item.batches.stop):
            current = known or self._jobs.read_control(run.item.job_id)
            run.rolled_up = current.rolled_up_total if current is not None else run.rolled_up
            verdict = self._verdict(current, run.checkpoint)
            if verdict is not None or stop.requested or run.result is not None:
                return verdict
            assert current is not None  # a missing job got a verdict
            run.limit = current.budget_limit
            if known is not None and self._adopt(run, batch_index):
                known = None
                continue
            known = None
            if not self._admit_batch(run, batch_index, stop):
                return None
        return None

    def _adopt(self, run: _Run, batch_index: int) -> bool:
        """A batch an earlier attempt committed (its delta exists) but did not checkpoint: only
        the first batch of a run can be one, since batches are committed and checkpointed in order."""
        usage = self._costs.get_delta(run.item.job_id, batch_record_id(batch_index))
        if usage is None:
            return False
        run.cursor.skip(len(run.item.batch_range(batch_index)))
        logger.info(
            "Adopting a batch committed by an earlier attempt", job_id=run.item.job_id, batch=batch_index
        )
        self._checkpoint(run, batch_index, (usage, None))
        return True

    def _admit_batch(self, run: _Run, batch_index: int, stop: StopSignal) -> bool:
        """Admit the batch's records in order (committing earlier batches as they land); False
        when admission ends early (stop, a crash, the budget)."""
        batch = _OpenBatch(index=batch_index, opens_at_start=run.cursor.opens)
        run.open.append(batch)
        try:
            for position in run.item.batch_range(batch_index):
                decision = self._admission(run, stop)
                while decision == _COMMIT:
                    self._commit_oldest(run)
                    decision = self._admission(run, stop)
                if decision != _ADMIT:
                    return False
                seed_index, seed_record = run.cursor.next()
                run.flight.launched(batch_index)
                batch.launched += 1
                self._pool.submit(self._record_task, run, batch_index, position, seed_index, seed_record)
        finally:
            batch.opens_at_end = run.cursor.opens
        return True

    def _admission(self, run: _Run, stop: StopSignal) -> str:
        """Wait until one more record may start (``_ADMIT``), the oldest batch can be committed
        (``_COMMIT``), or admission must end (``_STOP``: stop or a crash; ``_END``: the job ends, its
        budget reached, or a commit found it cancelled or failed)."""
        flight = run.flight
        with flight.changed:
            while True:
                if stop.requested or flight.error is not None:
                    return _STOP
                if run.result is not None:
                    return _END
                oldest = run.open[0]
                if oldest is not run.open[-1] and oldest.admitted and flight.all_landed(oldest.index):
                    return _COMMIT
                spent = (
                    max(run.rolled_up, run.checkpoint.usage.total)
                    + run.fargate_since_commit()
                    + flight.landed_cost
                )
                if run.limit is not None and spent >= run.limit:
                    run.result = _budget_result(run.limit, run.checkpoint)
                    return _END
                # Committing the open batches will cost their S3 writes; the records in flight
                # will cost about the estimate each.
                projected = spent + run.commit_writes() + flight.estimate.per_record() * flight.in_flight
                if run.limit is None or projected < run.limit:
                    if flight.in_flight < self._calls.window(run.models):
                        run.started = True
                        return _ADMIT
                elif flight.in_flight == 0:
                    if not run.started:  # a budget below one batch's fixed cost still makes a record
                        run.started = True
                        return _ADMIT
                    run.result = _budget_result(run.limit, run.checkpoint)
                    return _END  # committing what landed reaches the budget
                # A landing record frees a slot, moves the budget and may widen the window; the
                # timeout re-reads ``stop``, set from other threads without notifying.
                flight.changed.wait(_ADMIT_POLL_SECONDS)

    def _commit_oldest(self, run: _Run) -> None:
        """Wait for the oldest open batch to land, then commit it: part, delta, checkpoint."""
        batch = run.open[0]
        with run.flight.changed:
            run.flight.changed.wait_for(lambda: run.flight.all_landed(batch.index))
        run.open.popleft()
        assembled = _Batch()
        for outcome in run.flight.take(batch.index):
            assembled.add(outcome)
        now = self._monotonic()
        opens_at_end = run.cursor.opens if batch.opens_at_end is None else batch.opens_at_end
        gets = opens_at_end - batch.opens_at_start
        committed = self._commit(run.item, batch.index, assembled, now - run.committed_at, gets)
        run.committed_at = now
        run.overhead_since = time.monotonic()
        self._checkpoint(run, batch.index, committed)
        if run.result is None and len(run.open) == 1 and not run.open[0].admitted:
            # A batch is being admitted: look at the job again, so a cancellation (or the rollup's
            # budget marker) cuts it short instead of waiting for its end.
            control = self._jobs.read_control(run.item.job_id)
            run.rolled_up = control.rolled_up_total if control is not None else run.rolled_up
            run.result = self._verdict(control, run.checkpoint)

    def _checkpoint(self, run: _Run, batch_index: int, committed: tuple[Usage, str | None]) -> None:
        run.checkpoint = self._advance(run.checkpoint, batch_index, committed)
        self._on_batch()
        result = self._after_batch(run.item, batch_index, committed, run.checkpoint, run.limit)
        if run.result is None:
            run.result = result

    def _after_batch(
        self,
        item: WorkItem,
        batch_index: int,
        committed: tuple[Usage, str | None],
        checkpoint: Checkpoint,
        limit: Decimal | None,
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
            return _budget_result(limit, checkpoint)
        return None

    # ---------------------------------------------------------- job setup

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
                compiled = self._renderer.compile(step.prompt)
            except (UnknownModelError, RenderError) as error:
                raise _JobError(INVALID_TEMPLATE, f"step {step.id!r}: {error}") from error
            steps.append(Step(id=step.id, prompt=step.prompt, model=model, template=compiled))
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
        # The rolled-up cost of every partition; this item's own committed cost may not be rolled up yet.
        spent = max(control.rolled_up_total, checkpoint.usage.total)
        if control.budget_exceeded or (control.budget_limit is not None and spent >= control.budget_limit):
            return _budget_result(control.budget_limit, checkpoint, spent)
        return None

    # -------------------------------------------------------------- batch

    def _record_task(
        self, run: _Run, batch: int, position: int, seed_index: int, seed_record: Mapping[str, Any]
    ) -> None:
        try:
            outcome = self._generate_record(run.item, run.steps, batch, position, seed_index, seed_record)
        except BaseException as error:  # handed to the admitting thread, which raises it
            run.flight.landed(batch, None, error)
            return
        run.flight.landed(batch, outcome, None)
        self._on_progress()

    def _generate_record(
        self,
        item: WorkItem,
        steps: list[Step],
        batch: int,
        position: int,
        seed_index: int,
        seed_record: Mapping[str, Any],
    ) -> _RecordOutcome:
        outcome = _RecordOutcome(batch=batch, position=position)
        outputs: dict[str, dict[str, str]] = {}
        context: dict[str, Any] = {**seed_record, "steps": outputs}
        results: dict[str, StepResult] = {}
        for step in steps:
            try:
                prompt = self._renderer.render(step.template, context)
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
        self, item: WorkItem, batch_index: int, batch: _Batch, seconds: float, gets: int
    ) -> tuple[Usage, str | None]:
        """Part, then delta. Fargate time is what passed since the previous commit: batches
        overlap, and this bills the worker's time once."""
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
            fargate=quantize(self._fargate_for(item).cost(_seconds(seconds))),
            s3=quantize(s3_cost(puts=puts, gets=gets)),
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
            partition=checkpoint.partition,
            next_batch=batch_index + 1,
            usage=checkpoint.usage.plus(usage),
            first_error=checkpoint.first_error or first_error,
            updated_at=to_iso(self._clock()),
        )
        self._outputs.put_checkpoint(advanced)
        return advanced

    # ------------------------------------------------------------- export

    def _export_job(self, item: WorkItem, steps: list[Step], control: JobControl) -> JobResult:
        """Join the committed parts in record order into the export files, and answer the job's
        final counts and cost: records in the files, and the sum of every delta (the export's too).

        A complete export (kind "export" without ``partial``, or a whole-job item) needs every batch
        committed; a partial one takes the batches that committed (a stopped job)."""
        deltas = self._costs.list_deltas(item.job_id)
        batches = sorted(int(rid) for rid in deltas if rid.isdigit() and int(rid) < item.batch_count)
        missing = item.batch_count - len(batches)
        if missing and not item.partial:
            return JobResult(
                outcome=Outcome.FAILED,
                error=EXPORT_INCOMPLETE,
                cause=f"{missing} of {item.batch_count} batches did not commit; the export needs them all",
            )
        with_records = [b for b in batches if deltas[batch_record_id(b)].records > 0]
        try:
            options = ExportOptions.of(control.partition_strategy, control.export_config)
        except ValueError as error:
            return JobResult(outcome=Outcome.FAILED, error=INVALID_EXPORT_CONFIG, cause=str(error))
        started = self._monotonic()
        result = self._exporter.export(
            item.job_id, item.output_format, with_records, [s.id for s in steps], options, self._on_progress
        )
        total = Usage()
        for record_id_, usage in deltas.items():
            if record_id_ != EXPORT_RECORD_ID:
                total = total.plus(usage)
        if result.keys:
            usage = Usage(
                fargate=quantize(self._fargate_for(item).cost(_seconds(self._monotonic() - started))),
                s3=quantize(s3_cost(puts=result.puts, gets=result.gets)),
            )
            total = total.plus(self._put_delta(item, EXPORT_RECORD_ID, usage, None))
        return JobResult(
            outcome=Outcome.SUCCEEDED,
            records_generated=result.records,
            records_failed=total.records_failed,
            output_key=result.key,
            files=len(result.keys),
            final_usage=total,
        )

    def _fargate_for(self, item: WorkItem) -> FargatePrice:
        """The Fargate share is billed at the job's task size (the size of the service that runs it)."""
        shape = TASK_SHAPES[item.task_size]
        return self._fargate.at_size(shape.cpu_units, shape.memory_mib)


_STOP = "stop"
_END = "end"
_ADMIT_POLL_SECONDS = 0.05


_COMMIT = "commit"
_ADMIT = "admit"


@dataclass
class _Run:
    """One run of a job's batches: what admission and commits share (the admitting thread's)."""

    item: WorkItem
    steps: list[Step]
    models: set[str]
    cursor: SeedCursor
    flight: _Flight
    checkpoint: Checkpoint
    start: int  # the first batch of this run (the checkpoint's next, within the item's batches)
    committed_at: float  # the service clock at the last commit (Fargate time is billed from it)
    overhead_since: float  # the real clock then (for the admission estimate only)
    fargate: FargatePrice  # the price of the item's task size (read for every record admitted)
    limit: Decimal | None = None
    result: JobResult | None = None
    started: bool = False  # a record was admitted in this run
    rolled_up: Decimal = Decimal(0)  # the job's rolled-up cost (every partition) at the last read
    open: deque[_OpenBatch] = field(default_factory=deque)

    def fargate_since_commit(self) -> Decimal:
        """The worker's time since the last commit (already spent; the next delta bills it with
        the service's own clock, this real-clock reading is for admission only)."""
        return self.fargate.cost(_seconds(time.monotonic() - self.overhead_since))

    def commit_writes(self) -> Decimal:
        """What committing the open batches will cost in S3 writes (part and checkpoint each)."""
        return s3_cost(puts=2 * len(self.open), gets=0)


def _budget_result(limit: Decimal | None, checkpoint: Checkpoint, spent: Decimal | None = None) -> JobResult:
    spent = checkpoint.usage.total if spent is None else spent
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
