"""The dry run (``POST /templates/{id}/test``): one seed record through a template, nothing kept.

What it does, in order:

1. Reads the version (latest by default) with the same access rule as ``GET /templates/{id}``
   (404 missing, 403 another user's private one) and resolves every step's model (400 naming the
   step for an unknown one).
2. Takes the seed record: inline, or record ``record_index`` (default 0) of one of the caller's
   uploads, streamed with the shared seed reader (403 outside ``seed-data/{you}/``, 404 missing,
   400 for a malformed file or a file with fewer records).
3. Counts one request against the caller's rate limit (429 with ``Retry-After``): before reading
   the seed file or calling a model, after the checks that cost nothing.
4. Renders each step exactly as the worker does: the same ``PromptRenderer`` (the sandbox and its
   size and time limits, functions/worker/rendering.py) and the same context (the seed record's
   fields plus ``steps.<id>.{prompt,output,model}`` of earlier steps). A render error is a 400
   naming the step and the template line.
5. Calls the model (the worker's provider: offline locally, Bedrock in AWS) unless
   ``call_model`` is false. The whole dry run has a time budget (25 s, inside API Gateway's 30 s):
   each call may take only what is left of it, a step is not called with less than 5 s left, and a
   call that times out degrades that step to prompts only (stated in the assumptions). A step not
   called has ``[output of step <id>]`` standing in for its output, and its tokens are estimated.
6. Answers the prompts, outputs, tokens and cost of that record, and an estimate for a job of
   ``num_records`` with every assumption stated.

It writes nothing (no job, no cost record, no S3 object) and emits no event; its only write is
the rate-limit counter (functions/common/rate_limit.py). Model calls of a dry run are not billed
to any job and do not count against any budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from botocore.exceptions import ClientError, ConnectTimeoutError, ReadTimeoutError
from jinja2 import TemplateSyntaxError

from functions.common.catalogue import ModelPrice, UnknownModelError, resolve_model
from functions.common.errors import BadRequestError, ForbiddenError, NotFoundError, ServiceUnavailableError
from functions.common.rate_limit import RateLimiter
from functions.common.sandbox import TEMPLATE_FILENAME as _TEMPLATE_FILENAME
from functions.common.sizes import TASK_SHAPES
from functions.common.storage import (
    SeedFolderTooLargeError,
    SeedPathError,
    is_seed_folder,
    list_seed_files,
    seed_location,
)
from functions.seed_data.reader import SeedDataError, detect_format, iter_seed_records
from functions.templates.models import TemplateVersion
from functions.templates.product_models import (
    DryRunRecord,
    DryRunRequest,
    DryRunResponse,
    DryRunStep,
    JobEstimate,
)
from functions.worker.pricing import FargatePrice
from functions.worker.providers import ModelCallError, ModelProvider, ProviderUnavailable, estimate_tokens
from functions.worker.rendering import PromptRenderer, RenderError

# When the model is not called: each step's answer is assumed this long and this fast.
ASSUMED_OUTPUT_TOKENS = 256
ASSUMED_CALL_SECONDS = Decimal("1.0")
ASSUMED_TOKENS_PER_SECOND = 50
# The dry run answers within this (API Gateway's integration timeout is 30 s): a model call may take
# what is left of it, and is not started with less than MIN_CALL_SECONDS left.
DEFAULT_TIME_BUDGET_SECONDS = 25.0
MIN_CALL_SECONDS = 5.0
_MONEY = Decimal("0.000000001")


class TemplateReader(Protocol):
    """``TemplateService.get``: one version with the access rule of ``GET /templates/{id}``."""

    def get(self, caller: str, template_id: str, version: int | None) -> TemplateVersion: ...


# A model provider whose calls give up after the given seconds (the dry run's remaining budget).
ProviderFactory = Callable[[float], ModelProvider]


class SeedFiles(Protocol):
    @property
    def bucket(self) -> str: ...

    def records(self, key: str) -> Iterator[dict[str, Any]]: ...


@dataclass(frozen=True)
class WorkerShape:
    """What the estimate assumes of a job's workers: the lifecycle's partitioning (context
    ``partition_records`` / ``partition_concurrency``) and each worker's records in flight."""

    record_concurrency: int = 16
    partition_records: int = 1000
    partition_concurrency: int = 10
    provider_name: str = "bedrock"


@dataclass
class _Run:
    steps: list[DryRunStep] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)
    seconds: Decimal = Decimal(0)
    timed_out: list[str] = field(default_factory=list)


class S3SeedFiles:
    """Records of an upload, streamed (never held whole) with the shared seed reader."""

    def __init__(self, s3_client: Any, bucket: str) -> None:
        self._s3 = s3_client
        self._bucket = bucket

    @property
    def bucket(self) -> str:
        return self._bucket

    def records(self, key: str) -> Iterator[dict[str, Any]]:
        """A file's records, or a folder's (its files in key order, as a job reads them)."""
        if not is_seed_folder(key):
            yield from self._file_records(key)
            return
        try:
            files = list_seed_files(self._s3, self._bucket, key)
        except SeedFolderTooLargeError as error:
            raise BadRequestError(str(error)) from None
        if not files:
            raise NotFoundError("Seed data not found")
        for file_key in files:
            yield from self._file_records(file_key)

    def _file_records(self, key: str) -> Iterator[dict[str, Any]]:
        try:
            answer = self._s3.get_object(Bucket=self._bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                raise NotFoundError("Seed data not found") from None
            raise
        body = answer["Body"]
        try:
            fmt = detect_format(key, answer.get("ContentType"))
            for record in iter_seed_records(body.iter_chunks(), fmt):
                yield record.data
        finally:
            body.close()


class DryRunService:
    def __init__(
        self,
        *,
        templates: TemplateReader,
        seeds: SeedFiles,
        provider: ProviderFactory,
        renderer: PromptRenderer,
        limiter: RateLimiter,
        worker: WorkerShape,
        time_budget_seconds: float = DEFAULT_TIME_BUDGET_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._templates = templates
        self._seeds = seeds
        self._provider = provider
        self._renderer = renderer
        self._limiter = limiter
        self._worker = worker
        self._budget = time_budget_seconds
        self._monotonic = monotonic

    def run(self, caller: str, template_id: str, request: DryRunRequest) -> DryRunResponse:
        template = self._templates.get(caller, template_id, request.version)
        steps = _priced_steps(template)
        key = self._seed_key(caller, request.seed_data_path) if request.seed_data_path is not None else None
        self._limiter.acquire(caller)
        seed = self._seed(key, request.record_index or 0) if key is not None else request.seed_record or {}
        run = self._render_and_call(steps, seed, call_model=request.call_model)
        record = DryRunRecord(
            tokens_in=sum(s.tokens_in for s in run.steps),
            tokens_out=sum(s.tokens_out for s in run.steps),
            cost=sum((s.cost for s in run.steps), Decimal(0)),
            duration_ms=int(run.seconds * 1000),
        )
        return DryRunResponse(
            template_id=template.template_id,
            version=template.version,
            seed_data_path=request.seed_data_path,
            record_index=(request.record_index or 0) if request.seed_data_path is not None else None,
            steps=run.steps,
            record=record,
            estimate=self._estimate(run, record, request),
        )

    # ----------------------------------------------------------------- seed

    def _seed_key(self, caller: str, path: str) -> str:
        """The key or folder a ``seed_data_path`` names, in the forms ``POST /jobs`` accepts."""
        try:
            return seed_location(path, caller, self._seeds.bucket)
        except SeedPathError as error:
            raise ForbiddenError(f"{error}: one of your uploads, or a folder of them") from None

    def _seed(self, key: str, wanted: int) -> dict[str, Any]:
        count = 0
        try:
            for record in self._seeds.records(key):
                if count == wanted:
                    return record
                count += 1
        except SeedDataError as error:
            raise BadRequestError(
                f"The seed file is malformed: {error}", details={"line": error.line}
            ) from None
        raise BadRequestError(
            f"The seed file has {count} records; record_index {wanted} does not exist",
            details={"records": count},
        )

    # ---------------------------------------------------------------- steps

    def _render_and_call(
        self, steps: list[tuple[str, str, ModelPrice]], seed: dict[str, Any], *, call_model: bool
    ) -> _Run:
        outputs: dict[str, dict[str, str]] = {}
        run = _Run(context={**seed, "steps": outputs})
        deadline = self._monotonic() + self._budget
        for step_id, source, model in steps:
            step_started = self._monotonic()
            prompt = self._render(step_id, source, run.context)
            remaining = deadline - self._monotonic()
            result = None
            if call_model and remaining >= MIN_CALL_SECONDS:
                result = self._call(step_id, model, prompt, seed, remaining)
                if result is None:
                    run.timed_out.append(step_id)
            if result is None:
                result = _assumed(model, prompt)
            elapsed = Decimal(max(0, round((self._monotonic() - step_started) * 1000))) / 1000
            if not result.model_called:
                elapsed += ASSUMED_CALL_SECONDS + Decimal(ASSUMED_OUTPUT_TOKENS) / ASSUMED_TOKENS_PER_SECOND
            run.seconds += elapsed
            run.steps.append(
                result.model_copy(
                    update={"id": step_id, "prompt": prompt, "duration_ms": int(elapsed * 1000)}
                )
            )
            output = result.output if result.output is not None else f"[output of step {step_id}]"
            outputs[step_id] = {"prompt": prompt, "output": output, "model": model.model_id}
        return run

    def _render(self, step_id: str, source: str, context: dict[str, Any]) -> str:
        try:
            return self._renderer.render(source, context)
        except RenderError as error:
            line = template_line(error)
            where = f", line {line}" if line is not None else ""
            raise BadRequestError(
                f"Step {step_id!r}{where}: {error}", details={"step": step_id, "line": line}
            ) from None

    def _call(
        self, step_id: str, model: ModelPrice, prompt: str, seed: dict[str, Any], seconds: float
    ) -> DryRunStep | None:
        """The step's answer from the model; None when it did not answer within ``seconds``."""
        try:
            completion = self._provider(seconds).complete(model, prompt, seed)
        except (ReadTimeoutError, ConnectTimeoutError):
            return None
        except ModelCallError as error:
            raise BadRequestError(f"Step {step_id!r}: {error}", details={"step": step_id}) from None
        except ProviderUnavailable as error:
            raise ServiceUnavailableError(
                f"The model service cannot answer now; try again later ({error})", details={"step": step_id}
            ) from None
        return DryRunStep(
            id=step_id,
            model=model.model_id,
            prompt=prompt,
            output=completion.text,
            model_called=True,
            tokens_in=completion.tokens_in,
            tokens_out=completion.tokens_out,
            # The offline stand-in counts tokens from text, as the worker bills it; Bedrock reports them.
            tokens_estimated=self._worker.provider_name == "offline",
            cost=_money(model.cost(completion.tokens_in, completion.tokens_out)),
            duration_ms=0,
        )

    # ------------------------------------------------------------- estimate

    def _estimate(self, run: _Run, record: DryRunRecord, request: DryRunRequest) -> JobEstimate:
        shape = self._worker
        num_records = request.num_records
        partitions = -(-num_records // shape.partition_records)
        parallel = min(shape.partition_concurrency, partitions)
        concurrency = parallel * shape.record_concurrency
        duration = Decimal(num_records) * run.seconds / concurrency
        task = TASK_SHAPES[request.task_size]
        fargate = FargatePrice.for_task(task.cpu_units, task.memory_mib)
        model_cost = _money(record.cost * num_records)
        # Each partition in flight holds one worker task for the duration.
        fargate_cost = _money(fargate.cost(duration * parallel))
        return JobEstimate(
            num_records=num_records,
            task_size=request.task_size,
            parallel_partitions=parallel,
            record_concurrency=concurrency,
            seconds_per_record=float(run.seconds),
            model_cost=model_cost,
            fargate_cost=fargate_cost,
            total_cost=model_cost + fargate_cost,
            duration_seconds=math.ceil(duration),
            assumptions=self._assumptions(run, record, (partitions, parallel, concurrency), fargate),
        )

    def _assumptions(
        self, run: _Run, record: DryRunRecord, counts: tuple[int, int, int], fargate: FargatePrice
    ) -> list[str]:
        partitions, parallel, concurrency = counts
        notes = [
            f"Every record costs and takes what this one did: {record.tokens_in} input and "
            f"{record.tokens_out} output tokens over {len(run.steps)} step(s), "
            f"{run.seconds:.3f} s. Seed records of other lengths cost proportionally more or less.",
            f"The job runs as {partitions} partition(s) of at most {self._worker.partition_records} "
            f"records, {parallel} at a time, each worker generating up to {self._worker.record_concurrency} "
            f"record(s) at once (MODEL_MAX_CONCURRENCY; throttling or the budget can hold it lower): "
            f"{concurrency} at a time in all; duration = num_records x seconds per record / "
            f"{concurrency}, once the job runs (time spent queued is not included).",
            f"The Fargate share is one Spot task of {fargate.vcpu:g} vCPU and {fargate.memory_gb:g} GB "
            f"per partition in flight, for the whole duration (${fargate.vcpu_hour}/vCPU-hour, "
            f"${fargate.gb_hour}/GB-hour).",
            "Not included: S3 requests (about $0.005 per thousand writes), retries, throttling, "
            "and records that fail.",
        ]
        if any(not s.model_called for s in run.steps):
            notes.append(
                f"For steps whose model was not called, the answer is assumed to be "
                f"{ASSUMED_OUTPUT_TOKENS} tokens taking {ASSUMED_CALL_SECONDS} s plus "
                f"{ASSUMED_TOKENS_PER_SECOND} tokens per second, and later prompts read "
                f"'[output of step <id>]' in its place."
            )
        if run.timed_out:
            notes.append(
                f"The model did not answer within the dry run's time budget for step(s) "
                f"{', '.join(run.timed_out)}: those outputs are assumed as above; try with fewer steps "
                f"or call_model false."
            )
        if self._worker.provider_name == "offline":
            notes.append(
                "The offline model answered (MODEL_PROVIDER=offline): outputs are stand-in text "
                "billed at the named model's prices, and its speed is not Bedrock's."
            )
        return notes


def _priced_steps(template: TemplateVersion) -> list[tuple[str, str, ModelPrice]]:
    steps = []
    for step in template.template_definition.steps:
        try:
            steps.append((step.id, step.prompt, resolve_model(step.model, step.model_tier)))
        except UnknownModelError as error:
            raise BadRequestError(f"Step {step.id!r}: {error}", details={"step": step.id}) from None
    return steps


def _assumed(model: ModelPrice, prompt: str) -> DryRunStep:
    tokens_in = estimate_tokens(prompt)
    return DryRunStep(
        id="",
        model=model.model_id,
        prompt=prompt,
        output=None,
        model_called=False,
        tokens_in=tokens_in,
        tokens_out=ASSUMED_OUTPUT_TOKENS,
        tokens_estimated=True,
        cost=_money(model.cost(tokens_in, ASSUMED_OUTPUT_TOKENS)),
        duration_ms=0,
    )


def _money(amount: Decimal) -> Decimal:
    return amount.quantize(_MONEY).normalize() if amount else Decimal(0)


def template_line(error: BaseException) -> int | None:
    """The prompt line a render error happened on.

    Jinja2 rewrites a render error's traceback so its template frames carry the template's file
    name and line numbers; a syntax error carries its line itself."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TemplateSyntaxError) and current.lineno:
            return current.lineno
        line = None
        tb = current.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == _TEMPLATE_FILENAME:
                line = tb.tb_lineno
            tb = tb.tb_next
        if line is not None:
            return line
        current = current.__cause__ or current.__context__
    return None
