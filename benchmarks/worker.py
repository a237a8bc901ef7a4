"""Generation worker throughput, quota tracking, CPU per record and budget overshoot (``make bench``).

Everything runs in this process against moto (in-process DynamoDB and S3), with the real
``GenerationService``, renderer, exporter and ``ConcurrencyController``, and the offline model
with a configured latency. Ratios are measured side by side in one run:

- **records/s** of one job (3-step template, 200 ms per call) against the ideal
  ``min(quota, workers * N / (steps * latency))``: one worker at concurrency 1 (today's behaviour;
  30 records, since 2,000 would take 20 minutes: the ratio does not depend on the count), one
  worker adaptive (2,000 records), and 4 workers: 4 services with their own controllers, each on
  500 records (a job of its own: the work of one partition, without the lifecycle's fan-out, which
  benchmarks/fanout.py measures), run at once on 4 threads of this process.
- **quota**: time scaled down 60x (the quota is per second where AWS's is per minute; 50 ms per
  call): an offline quota below what the worker could do; achieved calls/s against the quota and
  the share of calls throttled after the first (scaled) minute, i.e. second.
- **CPU per record** of the pipeline itself (render, write, checkpoint, export; moto included) with
  an instant model: records per CPU-second of this process, the best of three 2,000-record jobs,
  each in a fresh moto world. The same run also measures, with
  per-thread CPU clocks, the CPU spent inside moto's request handler (the stand-in for DynamoDB and
  S3, which in AWS runs elsewhere) and inside the offline model (Bedrock's side, in AWS), and
  reports the worker's own share: records per CPU-second of what is left (boto3's client side,
  rendering, the concurrency machinery, serialization, cost accounting, the export's copying).
- **budget overshoot** for budgets of 1x, 10x and 100x one record's cost.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "JOBS_TABLE": "plot-palette-Jobs",
        "QUEUE_TABLE": "plot-palette-Queue",
        "TEMPLATES_TABLE": "plot-palette-Templates",
        "COST_TRACKING_TABLE": "plot-palette-CostTracking",
        "IDEMPOTENCY_TABLE": "plot-palette-Idempotency",
        "BUCKET_NAME": "plot-palette-data",
        "EVENT_BUS_NAME": "plot-palette",
    }
)

import boto3
from moto import mock_aws

from functions.common.aws import reset_clients
from functions.common.catalogue import ModelPrice
from functions.worker.concurrency import AimdPolicy, ConcurrencyController
from functions.worker.models import Outcome, WorkItem
from functions.worker.providers import Completion, ModelThrottled, OfflineBehaviour, OfflineProvider
from functions.worker.service import GenerationService
from tests.integration.worker.conftest import AUTHORS, World, start
from tests.support.resources import create_resources

THREE_STEPS = [
    {"id": "draft", "prompt": "Write a story about {{ author.name }} ({{ author.field }})."},
    {"id": "critique", "prompt": "Critique this story: {{ steps.draft.output }}"},
    {"id": "final", "prompt": "Rewrite {{ steps.draft.output }} following {{ steps.critique.output }}"},
]
STEPS = len(THREE_STEPS)
MAX_CONCURRENCY = 16
BATCH_SIZE = 100


class CountingProvider:
    """The offline provider, timestamping every success and throttle; with ``timed``, adding up
    the CPU time of its calls (the model's side, and this bookkeeping) in ``cpu``."""

    def __init__(self, inner: OfflineProvider, timed: bool = False) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self._timed = timed
        self.successes: list[float] = []
        self.throttles: list[float] = []
        self.cpu = 0.0

    def complete(self, model: ModelPrice, prompt: str, seed_record: Mapping[str, Any]) -> Completion:
        began = time.thread_time() if self._timed else 0.0
        try:
            completion = self._inner.complete(model, prompt, seed_record)
        except ModelThrottled:
            with self._lock:
                self.throttles.append(time.monotonic())
            raise
        with self._lock:
            self.successes.append(time.monotonic())
            if self._timed:
                self.cpu += time.thread_time() - began
        return completion


@contextmanager
def moto_cpu() -> Iterator[list[float]]:
    """The CPU time threads spend inside moto's request handler (``[seconds]``, summed): what
    DynamoDB and S3 do on their side. boto3's own work (serializing, signing, parsing) stays out."""
    from moto.core.botocore_stubber import BotocoreStubber

    spent = [0.0]
    lock = threading.Lock()
    handler = BotocoreStubber.__call__

    def timed(self: BotocoreStubber, event_name: str, request: Any, **kwargs: Any) -> Any:
        began = time.thread_time()
        try:
            return handler(self, event_name, request, **kwargs)
        finally:
            with lock:
                spent[0] += time.thread_time() - began

    BotocoreStubber.__call__ = timed  # type: ignore[method-assign]
    try:
        yield spent
    finally:
        BotocoreStubber.__call__ = handler  # type: ignore[method-assign]


@contextmanager
def moto_world() -> Iterator[World]:
    with mock_aws():
        reset_clients()
        session = boto3.Session(region_name="us-east-1")
        create_resources(session)
        yield World(session=session)
    reset_clients()


def service(world: World, provider: Any, max_limit: int) -> GenerationService:
    from functions.templates.repository import TemplateRepository
    from functions.worker.exporters import Exporter
    from functions.worker.pricing import FargatePrice
    from functions.worker.rendering import PromptRenderer
    from functions.worker.repository import CostStore, JobStore, OutputStore, S3SeedSource
    from tests.integration.worker.conftest import BUCKET, COST_TABLE, JOBS_TABLE, TEMPLATES_TABLE

    ddb, s3 = world.session.client("dynamodb"), world.session.client("s3")
    outputs = OutputStore(s3, BUCKET)
    return GenerationService(
        jobs=JobStore(ddb, JOBS_TABLE),
        costs=CostStore(ddb, COST_TABLE),
        outputs=outputs,
        seeds=S3SeedSource(s3, BUCKET),
        templates=TemplateRepository(ddb, TEMPLATES_TABLE),
        provider=provider,
        renderer=PromptRenderer(),
        exporter=Exporter(outputs),
        fargate=FargatePrice.for_task(1024, 2048),
        calls=ConcurrencyController(provider, policy=AimdPolicy(max_limit=max_limit)),
    )


@dataclass
class Run:
    records: int
    seconds: float
    cpu: float
    item: WorkItem


def run_jobs(world: World, jobs: list[tuple[WorkItem, GenerationService]]) -> Run:
    """Run the jobs at once (one thread each); wall and process CPU time of the whole."""
    results: list[Any] = [None] * len(jobs)

    def work(index: int) -> None:
        item, svc = jobs[index]
        results[index] = svc.run(item, start(world, item))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    began, cpu = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    for result in results:
        assert result.outcome is Outcome.SUCCEEDED, result
    return Run(sum(r.records_generated for r in results), seconds, cpu, jobs[0][0])


def job(
    world: World, num_records: int, template_id: str, seed: str, budget: Decimal = Decimal(1000)
) -> WorkItem:
    return world.make_job(
        num_records=num_records,
        batch_size=BATCH_SIZE,
        template_id=template_id,
        seed_data_path=seed,
        budget_limit=budget,
    )


def offline(latency_ms: float, rpm: int | None = None, timed: bool = False) -> CountingProvider:
    return CountingProvider(OfflineProvider(OfflineBehaviour(latency_ms=latency_ms, rpm=rpm)), timed)


# ------------------------------------------------------------------ benchmarks


def throughput(world: World, template_id: str, seed: str, latency: float = 0.2) -> list[dict[str, Any]]:
    rows = []
    cases: list[tuple[str, int, int, int]] = [
        ("1 worker, concurrency 1", 1, 1, 30),
        ("1 worker, adaptive", 1, MAX_CONCURRENCY, 2000),
        # Not the lifecycle's fan-out (benchmarks/fanout.py measures that): 4 services in this process.
        ("4 services in 1 process", 4, MAX_CONCURRENCY, 2000),
    ]
    for name, workers, limit, records in cases:
        jobs = [
            (
                job(world, records // workers, template_id, seed),
                service(world, offline(latency * 1000), limit),
            )
            for _ in range(workers)
        ]
        run = run_jobs(world, jobs)
        ideal = workers * limit / (STEPS * latency)
        rate = run.records / run.seconds
        rows.append(
            {
                "case": name,
                "records": run.records,
                "seconds": round(run.seconds, 2),
                "records_per_s": round(rate, 2),
                "ideal_records_per_s": round(ideal, 2),
                "ratio": round(rate / ideal, 3),
                "hours_for_1m_records": round(1_000_000 / rate / 3600, 1),
            }
        )
    return rows


def quota(world: World, template_id: str, seed: str) -> dict[str, Any]:
    # Capacity 16 / 0.05 = 320 calls/s, quota 200 calls/s: the window that fills the quota is
    # 200 * 0.05 = 10 calls, like a 600 RPM Bedrock quota at 1 s per call.
    latency, per_second = 0.05, 200
    provider = offline(latency * 1000, rpm=per_second * 60)
    item = job(world, 800, template_id, seed)
    run = run_jobs(world, [(item, service(world, provider, MAX_CONCURRENCY))])
    first = min(provider.successes + provider.throttles)
    after = first + 1.0  # the scaled first minute
    end = max(provider.successes)
    ok = [t for t in provider.successes if after <= t <= end]
    throttled = [t for t in provider.throttles if after <= t <= end]
    achieved = len(ok) / (end - after)
    return {
        "latency_ms": latency * 1000,
        "quota_calls_per_s": per_second,
        "capacity_calls_per_s": MAX_CONCURRENCY / latency,
        "seconds": round(run.seconds, 2),
        "achieved_calls_per_s": round(achieved, 1),
        "ratio_to_quota": round(achieved / per_second, 3),
        "throttled_share_after_first_second": round(len(throttled) / max(1, len(ok) + len(throttled)), 4),
    }


CPU_REPEATS = 3


def cpu_per_record() -> dict[str, Any]:
    """The best of ``CPU_REPEATS`` jobs, each in a fresh moto world: load only ever adds CPU time
    (cache misses, frequency changes), and moto slows as the earlier cases' items pile up in it."""
    runs = [_cpu_run() for _ in range(CPU_REPEATS)]
    best = min(runs, key=lambda r: r["cpu_seconds"])
    return best | {"repeats": CPU_REPEATS, "cpu_seconds_all": [r["cpu_seconds"] for r in runs]}


def _cpu_run() -> dict[str, Any]:
    with moto_world() as world:
        template_id = world.put_template(THREE_STEPS)
        seed = world.put_seed(seed_records())
        item = job(world, 2000, template_id, seed)
        model = offline(0, timed=True)
        with moto_cpu() as moto:
            run = run_jobs(world, [(item, service(world, model, MAX_CONCURRENCY))])
    worker = run.cpu - moto[0] - model.cpu
    return {
        "records": run.records,
        "cpu_seconds": round(run.cpu, 2),
        "ms_cpu_per_record": round(run.cpu / run.records * 1000, 3),
        "records_per_cpu_second": round(run.records / run.cpu, 1),
        # The same run, split: moto (AWS's side), the offline model (Bedrock's side), the worker.
        "moto_share": round(moto[0] / run.cpu, 3),
        "model_share": round(model.cpu / run.cpu, 3),
        "worker_ms_cpu_per_record": round(worker / run.records * 1000, 3),
        "worker_records_per_cpu_second": round(run.records / worker, 1),
    }


def budget_overshoot(world: World, template_id: str, seed: str) -> list[dict[str, Any]]:
    probe = job(world, BATCH_SIZE, template_id, seed)
    run_jobs(world, [(probe, service(world, offline(20), MAX_CONCURRENCY))])
    total = world.total_cost(probe.job_id)
    one_record = (total["bedrock"] + total["fargate"] + total["s3"]) / total["records"]
    rows = []
    for multiple in (1, 10, 100):
        budget = one_record * multiple
        item = job(world, 1000, template_id, seed, budget=budget)
        result = service(world, offline(20), MAX_CONCURRENCY).run(item, start(world, item))
        cost = world.total_cost(item.job_id)
        spent = cost["bedrock"] + cost["fargate"] + cost["s3"]
        rows.append(
            {
                "budget_records": multiple,
                "outcome": result.error or result.outcome.value,
                "records": result.records_generated,
                "overshoot_records": round(float((spent - budget) / one_record), 2),
                "overshoot_percent": round(float((spent - budget) / budget * 100), 1),
                "bound_records_in_flight": MAX_CONCURRENCY,
            }
        )
    return rows


def seed_records(count: int = 2000) -> list[dict[str, Any]]:
    """As many seed records as the job has (a 3-record seed would be re-read every 3 records)."""
    return [{"author": {**AUTHORS[i % 3]["author"], "name": f"Author {i}"}} for i in range(count)]


def run() -> tuple[list[str], dict[str, Any]]:
    with moto_world() as world:
        template_id = world.put_template(THREE_STEPS)
        seed = world.put_seed(seed_records())
        results = {
            "throughput": throughput(world, template_id, seed),
            "quota": quota(world, template_id, seed),
            "budget": budget_overshoot(world, template_id, seed),
        }
    results["cpu"] = cpu_per_record()
    return _table(results), results


def _table(results: dict[str, Any]) -> list[str]:
    lines = [
        "worker: records/s of one job (3 steps, offline model 200 ms/call) vs ideal min(quota, W*N/(3*0.2 s))"
    ]
    lines.append(f"{'case':<26}{'records':>8}{'rec/s':>9}{'ideal':>9}{'ratio':>8}{'1M records':>12}")
    for row in results["throughput"]:
        lines.append(
            f"{row['case']:<26}{row['records']:>8}{row['records_per_s']:>9.2f}{row['ideal_records_per_s']:>9.2f}"
            f"{row['ratio']:>8.2f}{row['hours_for_1m_records']:>10.1f} h"
        )
    q = results["quota"]
    lines.append(
        f"worker: quota below capacity (time /60: {q['latency_ms']:.0f} ms/call,"
        f" quota {q['quota_calls_per_s']} calls/s, capacity {q['capacity_calls_per_s']:.0f}):"
        f" achieved {q['achieved_calls_per_s']} calls/s = {q['ratio_to_quota']:.2f}x quota,"
        f" throttled after the first second {q['throttled_share_after_first_second']:.1%}"
    )
    c = results["cpu"]
    lines.append(
        f"worker: CPU per record, instant model (render+write+checkpoint+export, moto included;"
        f" best of {c['repeats']}, CPU s {c['cpu_seconds_all']}):"
        f" {c['ms_cpu_per_record']} ms = {c['records_per_cpu_second']:.0f} records per CPU-second"
        f" (moto {c['moto_share']:.0%}, offline model {c['model_share']:.0%}; the worker's own:"
        f" {c['worker_ms_cpu_per_record']} ms = {c['worker_records_per_cpu_second']:.0f}"
        " records per CPU-second)"
    )
    lines.append(
        f"{'budget (records)':<18}{'outcome':>16}{'records':>9}{'overshoot':>11}"
        f"{'overshoot %':>13}{'bound':>7}"
    )
    for row in results["budget"]:
        lines.append(
            f"{row['budget_records']:<18}{row['outcome']:>16}{row['records']:>9}{row['overshoot_records']:>11.2f}"
            f"{row['overshoot_percent']:>12.1f}%{row['bound_records_in_flight']:>7}"
        )
    return lines
