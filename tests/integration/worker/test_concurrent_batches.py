"""Records generated concurrently inside a batch, against moto: the same ids, order, parts and
deltas as one record at a time; a crash with calls in flight resumes without duplicates or double
billing; the budget stops admitting records so the overshoot is bounded by what was in flight."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pytest

from functions.common.catalogue import ModelPrice
from functions.worker.concurrency import AimdPolicy, ConcurrencyController
from functions.worker.models import Outcome, WorkItem
from functions.worker.providers import Completion, OfflineBehaviour, OfflineProvider
from functions.worker.repository import part_key
from functions.worker.service import BUDGET_EXCEEDED, StopSignal, record_id
from tests.integration.worker.conftest import AUTHORS, TWO_STEPS, World, start

pytestmark = pytest.mark.integration


class _Crash(Exception):
    """A worker killed in the middle of a batch."""


class InFlightProvider:
    """The offline model with a random latency (so calls land out of order), counting the calls
    in flight; ``crash_at`` raises on that call once others are in flight."""

    def __init__(
        self, crash_at: int | None = None, stop: StopSignal | None = None, latency_ms: float = 2
    ) -> None:
        self._inner = OfflineProvider(OfflineBehaviour(latency_ms=latency_ms, jitter_ms=15))
        self._lock = threading.Lock()
        self._crash_at = crash_at
        self._stop = stop
        self.calls = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self.in_flight_at_crash = 0

    def complete(self, model: ModelPrice, prompt: str, seed_record: Mapping[str, Any]) -> Completion:
        with self._lock:
            self.calls += 1
            call = self.calls
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if call == self._crash_at:
                time.sleep(0.01)  # let the others get going
                self.in_flight_at_crash = self.in_flight
                raise _Crash(f"killed at call {call}")
            if self._stop is not None and call == 5:
                self._stop.request("shutdown")
            return self._inner.complete(model, prompt, seed_record)
        finally:
            with self._lock:
                self.in_flight -= 1


def controller(provider: Any, max_limit: int) -> ConcurrencyController:
    return ConcurrencyController(provider, policy=AimdPolicy(max_limit=max_limit, initial=max_limit))


def _without_times(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "created_at"} for r in records]


def _pair(world: World, **job: Any) -> tuple[WorkItem, WorkItem]:
    template_id = world.put_template(TWO_STEPS)
    seed = world.put_seed(AUTHORS)
    return tuple(  # type: ignore[return-value]
        world.make_job(template_id=template_id, seed_data_path=seed, **job) for _ in range(2)
    )


def test_concurrent_records_give_the_parts_and_deltas_of_one_at_a_time(world: World, make_service: Any):
    one_at_a_time, concurrent = _pair(world, num_records=23, batch_size=8)
    provider = InFlightProvider()

    first = make_service(calls=controller(OfflineProvider(), 1)).run(
        one_at_a_time, start(world, one_at_a_time)
    )
    second = make_service(calls=controller(provider, 6)).run(concurrent, start(world, concurrent))

    assert first.outcome is second.outcome is Outcome.SUCCEEDED
    assert provider.most_in_flight > 1  # really concurrent
    assert provider.calls == 23 * 2
    assert world.parts(concurrent.job_id) == [part_key(concurrent.job_id, b) for b in range(3)]
    records = world.part_records(concurrent.job_id)
    assert [r["id"] for r in records] == [record_id(concurrent.job_id, p) for p in range(23)]
    assert [r["seed_index"] for r in records] == [p % 3 for p in range(23)]
    reference = world.part_records(one_at_a_time.job_id)
    for record, expected in zip(_without_times(records), _without_times(reference), strict=True):
        assert record["steps"] == expected["steps"]  # step two read step one of the same record
    assert [d["record_id"] for d in world.deltas(concurrent.job_id)] == [
        "00000000",
        "00000001",
        "00000002",
        "export",
    ]
    assert world.total_cost(concurrent.job_id) == world.total_cost(one_at_a_time.job_id)
    assert [r["id"] for r in world.read_jsonl(second.output_key or "")] == [r["id"] for r in records]


def test_a_crash_mid_batch_with_calls_in_flight_resumes_without_duplicates_or_double_billing(
    world: World, make_service: Any
):
    clean, item = _pair(world, num_records=20, batch_size=8)
    assert make_service().run(clean, start(world, clean)).outcome is Outcome.SUCCEEDED

    crashing = InFlightProvider(crash_at=8 * 2 + 7)  # in batch 1
    with pytest.raises(_Crash):
        make_service(calls=controller(crashing, 8)).run(item, start(world, item))
    assert crashing.in_flight_at_crash > 1
    # Nothing of batch 1 was written or billed. Batch 0 is committed unless its last records were
    # still in flight at the crash (batches overlap, so that depends on timing); part and delta agree.
    committed = world.parts(item.job_id)
    assert committed in ([], [part_key(item.job_id, 0)])
    assert [d["record_id"] for d in world.deltas(item.job_id)] == ["00000000"][: len(committed)]

    result = make_service(calls=controller(InFlightProvider(), 8)).run(item, start(world, item))

    assert result.outcome is Outcome.SUCCEEDED
    exported = world.read_jsonl(result.output_key or "")
    assert [r["id"] for r in exported] == [record_id(item.job_id, p) for p in range(20)]
    assert [r["seed_index"] for r in exported] == [p % 3 for p in range(20)]
    assert [d["record_id"] for d in world.deltas(item.job_id)] == [f"{b:08d}" for b in range(3)] + ["export"]
    assert world.total_cost(item.job_id) == world.total_cost(clean.job_id)


def test_a_shutdown_mid_batch_abandons_it_after_the_calls_in_flight_land(world: World, make_service: Any):
    item = world.make_job(num_records=20, batch_size=10)
    stop = StopSignal()
    provider = InFlightProvider(stop=stop)

    result = make_service(calls=controller(provider, 4)).run(item, start(world, item), stop)

    assert result.outcome is Outcome.ABANDONED
    assert provider.in_flight == 0
    assert provider.calls < 10
    assert world.parts(item.job_id) == []
    assert world.deltas(item.job_id) == []


def _record_costs(world: World, job_id: str) -> list[Decimal]:
    """Bedrock cost of each record of a finished job, priced from its parts."""
    from functions.common.catalogue import resolve_model
    from functions.worker.providers import estimate_tokens

    costs = []
    for record in world.part_records(job_id):
        cost = Decimal(0)
        for step in record["steps"].values():
            model = resolve_model(step["model"], None)
            cost += model.cost(estimate_tokens(step["prompt"]), estimate_tokens(step["output"]))
        costs.append(cost)
    return costs


@pytest.mark.parametrize("records_of_budget", [1, 3, 10])
def test_the_budget_overshoot_is_at_most_the_records_in_flight(
    world: World, make_service: Any, records_of_budget: int
):
    probe, item = _pair(world, num_records=30, batch_size=30)
    make_service(monotonic=time.monotonic).run(probe, start(world, probe))
    per_record = _record_costs(world, probe.job_id)
    overhead = world.total_cost(probe.job_id)["s3"] + world.total_cost(probe.job_id)["fargate"]
    one_record = sum(per_record, Decimal(0)) / len(per_record)
    budget = one_record * records_of_budget
    world.update_job(item.job_id, "SET budget_limit = :b", {":b": budget})
    max_in_flight = 6

    result = make_service(monotonic=time.monotonic, calls=controller(InFlightProvider(), max_in_flight)).run(
        item, start(world, item)
    )

    assert result.outcome is Outcome.FAILED
    assert result.error == BUDGET_EXCEEDED
    spent = sum(
        (d["cost"][k] for d in world.deltas(item.job_id) for k in ("bedrock", "fargate", "s3")), Decimal(0)
    )
    assert spent >= budget
    # The batch (30 records) was cut short: without in-flight admission the whole batch ran.
    assert 1 <= result.records_generated < 30
    assert spent - budget <= max_in_flight * max(per_record) + overhead
    assert len(world.part_records(item.job_id)) == result.records_generated
    parts = world.parts(item.job_id)
    assert all(world.read_jsonl(key) for key in parts)  # no empty part for a batch never started
    assert len(world.deltas(item.job_id)) == len(parts)


def test_the_next_batch_starts_while_the_last_records_of_the_previous_are_in_flight(
    world: World, make_service: Any
):
    item = world.make_job(num_records=24, batch_size=3)
    provider = InFlightProvider(latency_ms=100)  # longer than reading the job and committing

    result = make_service(calls=controller(provider, 8)).run(item, start(world, item))

    assert result.outcome is Outcome.SUCCEEDED
    assert provider.most_in_flight > 3  # records of more than one batch at once
    assert world.parts(item.job_id) == [part_key(item.job_id, b) for b in range(8)]
    for batch in range(8):
        part = world.read_jsonl(part_key(item.job_id, batch))
        assert [r["id"] for r in part] == [record_id(item.job_id, p) for p in range(batch * 3, batch * 3 + 3)]
    assert [d["record_id"] for d in world.deltas(item.job_id)] == [f"{b:08d}" for b in range(8)] + ["export"]
    assert sum(int(d["records"]) for d in world.deltas(item.job_id)) == 24
