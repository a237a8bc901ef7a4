"""Generating one job: from a work item to parts, cost deltas, an export and a result.

The rules (docs/data-model.md, docs/worker-contract.md):

- Before each batch the job is read (consistent): a cancellation request ends the job as
  ``JobCancelled``; the rollup's ``budget_exceeded`` marker, or the cost this worker has committed
  reaching ``budget_limit``, ends it as ``BudgetExceeded``. So at most one batch runs past either.
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
  most one batch past it.
- The export work item joins the parts of the committed batches (those with a delta) in batch order
  into the files the job asked for, and answers the records in the files and the sum of every delta:
  the lifecycle writes those as the job's final counts and cost.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from functions.common.clock import now, to_iso
from functions.common.observability import logger
from functions.common.sizes import TASK_SHAPES
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
from functions.worker.pricing import FargatePrice, ModelPrice, UnknownModelError, resolve_model, s3_cost
from functions.worker.providers import ModelCallError, ModelProvider
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
    ) -> None:
        self._jobs = jobs
        self._costs = costs
        self._outputs = outputs
        self._seeds = seeds
        self._templates = templates
        self._provider = provider
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
        cursor = SeedCursor(self._seeds, item.seed_data_path)
        known: JobControl | None = control
        start = max(checkpoint.next_batch, item.batches.start)
        try:
            cursor.skip(min(item.batch_range(start).start, item.num_records))
            for batch_index in range(start, item.batches.stop):
                # The first batch uses the job as recording the token just answered it.
                verdict = self._verdict(item, known, checkpoint)
                known = None
                if verdict is not None:
                    return verdict
                if stop.requested:
                    return JobResult(outcome=Outcome.ABANDONED, cause=stop.reason)
                committed = self._committed(item, batch_index, cursor)
                if committed is None:
                    batch = self._generate(item, steps, batch_index, cursor, stop)
                    if batch is None:
                        return JobResult(outcome=Outcome.ABANDONED, cause=stop.reason)
                    committed = self._commit(item, batch_index, batch, cursor)
                checkpoint = self._advance(checkpoint, batch_index, committed)
                self._on_batch()
                if committed[0].records == 0 and committed[0].records_failed > 0:
                    return JobResult(
                        outcome=Outcome.FAILED,
                        records_generated=checkpoint.usage.records,
                        records_failed=checkpoint.usage.records_failed,
                        error=GENERATION_FAILED,
                        cause=f"every record of batch {batch_index} failed; first error: {committed[1]}",
                    )
        except (SeedFileError, EmptySeedFileError) as error:
            return JobResult(outcome=Outcome.FAILED, error=SEED_DATA_ERROR, cause=str(error))
        return checkpoint

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

    def _verdict(self, item: WorkItem, known: JobControl | None, checkpoint: Checkpoint) -> JobResult | None:
        """Whether the job must stop before its next batch (cancelled, over budget, gone)."""
        control = known or self._jobs.read_control(item.job_id)
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
            return JobResult(
                outcome=Outcome.FAILED,
                error=BUDGET_EXCEEDED,
                cause=f"cost {spent} reached the budget of {control.budget_limit}",
                **done,
            )
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
        self, item: WorkItem, steps: list[Step], batch_index: int, cursor: SeedCursor, stop: StopSignal
    ) -> _Batch | None:
        batch = _Batch(started=self._monotonic(), opens_at_start=cursor.opens)
        for position in item.batch_range(batch_index):
            if stop.requested:
                return None  # abandon the batch: nothing of it is written or billed
            seed_index, seed_record = cursor.next()
            self._generate_record(item, steps, position, seed_index, seed_record, batch)
            self._on_progress()
        return batch

    def _generate_record(
        self,
        item: WorkItem,
        steps: list[Step],
        position: int,
        seed_index: int,
        seed_record: Mapping[str, Any],
        batch: _Batch,
    ) -> None:
        outputs: dict[str, dict[str, str]] = {}
        context: dict[str, Any] = {**seed_record, "steps": outputs}
        results: dict[str, StepResult] = {}
        for step in steps:
            try:
                prompt = self._renderer.render(step.prompt, context)
                completion = self._provider.complete(step.model, prompt, seed_record)
            except (RenderError, ModelCallError) as error:
                batch.failures.append(
                    RecordFailure(position=position, seed_index=seed_index, step_id=step.id, error=str(error))
                )
                return
            batch.tokens_in += completion.tokens_in
            batch.tokens_out += completion.tokens_out
            batch.bedrock += step.model.cost(completion.tokens_in, completion.tokens_out)
            batch.models.add(step.model.model_id)
            results[step.id] = StepResult(prompt=prompt, output=completion.text, model=step.model.model_id)
            outputs[step.id] = {"prompt": prompt, "output": completion.text, "model": step.model.model_id}
        batch.records.append(
            GeneratedRecord(
                id=record_id(item.job_id, position),
                job_id=item.job_id,
                seed_index=seed_index,
                created_at=to_iso(self._clock()),
                steps=results,
            )
        )

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
            fargate=quantize(self._fargate_for(item).cost(_seconds(self._monotonic() - batch.started))),
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
