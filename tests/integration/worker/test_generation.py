"""The generation service against moto with the offline provider: formats, multi-step templates,
failing records, cancellation, budget and resuming after a crash."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pyarrow.parquet as pq
import pytest

from functions.common.catalogue import CLAUDE_3_5_SONNET, LLAMA_3_1_8B, ModelPrice
from functions.rollup.models import CostDelta
from functions.rollup.repository import CostRepository
from functions.rollup.service import CostRollupService
from functions.worker.models import Checkpoint, Outcome, OutputFormat, Usage
from functions.worker.providers import Completion, OfflineProvider
from functions.worker.repository import CostStore, OutputStore, part_key
from functions.worker.service import BUDGET_EXCEEDED, GENERATION_FAILED, JOB_CANCELLED, record_id
from tests.integration.worker.conftest import (
    AUTHORS,
    BUCKET,
    COST_TABLE,
    JOBS_TABLE,
    TWO_STEPS,
    USER,
    World,
    plain,
    start,
)

pytestmark = pytest.mark.integration

RECORD_FIELDS = {"id", "job_id", "seed_index", "created_at", "steps"}


def _export_rows(world: World, key: str, fmt: OutputFormat) -> list[dict[str, Any]]:
    body = world.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    if fmt is OutputFormat.JSONL:
        return world.read_jsonl(key)
    if fmt is OutputFormat.CSV:
        return list(csv.DictReader(io.StringIO(body.decode())))
    return pq.read_table(io.BytesIO(body)).to_pylist()


@pytest.mark.parametrize("fmt", list(OutputFormat))
def test_a_job_in_each_format_produces_exactly_num_records(
    world: World, make_service: Any, fmt: OutputFormat
):
    item = world.make_job(num_records=7, batch_size=3, output_format=fmt)

    result = make_service().run(item, start(world, item))

    assert result.outcome is Outcome.SUCCEEDED
    assert result.records_generated == 7
    assert result.output_key == f"jobs/{item.job_id}/exports/dataset.{fmt.value.lower()}"
    assert world.parts(item.job_id) == [part_key(item.job_id, b) for b in range(3)]
    rows = _export_rows(world, result.output_key, fmt)
    assert len(rows) == 7
    # Seed records in order, cycling past the end of the 3-record file.
    seed_indexes = [int(row["seed_index"]) for row in rows]
    assert seed_indexes == [0, 1, 2, 0, 1, 2, 0]
    assert [row["id"] for row in rows] == [record_id(item.job_id, p) for p in range(7)]
    assert {row["job_id"] for row in rows} == {item.job_id}
    if fmt is OutputFormat.CSV:
        assert set(rows[0]) == {"id", "job_id", "seed_index", "created_at"} | {
            f"steps.bio.{f}" for f in ("prompt", "output", "model")
        }
        prompts = [row["steps.bio.prompt"] for row in rows]
        models = {row["steps.bio.model"] for row in rows}
    else:
        assert all(set(row) == RECORD_FIELDS for row in rows)
        prompts = [row["steps"]["bio"]["prompt"] for row in rows]
        models = {row["steps"]["bio"]["model"] for row in rows}
        assert all(row["steps"]["bio"]["output"].startswith("[offline ") for row in rows)
    assert prompts[1] == "Write a short biography of Octavia Butler (fiction)."
    assert prompts[3] == prompts[0]
    assert models == {LLAMA_3_1_8B}  # no model named: the cheapest tier
    # One delta per batch plus the export's, together exactly the records made.
    deltas = world.deltas(item.job_id)
    assert [d["record_id"] for d in deltas] == ["00000000", "00000001", "00000002", "export"]
    assert sum(int(d["records"]) for d in deltas) == 7
    checkpoint = Checkpoint.from_json(
        world.s3.get_object(Bucket=BUCKET, Key=f"jobs/{item.job_id}/checkpoint.json")["Body"].read()
    )
    assert checkpoint.next_batch == 3
    assert checkpoint.usage.records == 7


def test_json_array_seed_file_is_read_too(world: World, make_service: Any):
    seed = world.put_seed(AUTHORS, name="authors.json")
    item = world.make_job(num_records=3, batch_size=2, seed_data_path=seed)

    result = make_service().run(item, start(world, item))

    assert result.outcome is Outcome.SUCCEEDED
    names = [r["steps"]["bio"]["prompt"] for r in world.part_records(item.job_id)]
    assert names[2] == "Write a short biography of Alan Turing (computing)."


def test_a_seed_folder_is_read_file_after_file_in_key_order(world: World, make_service: Any):
    folder = f"seed-data/{USER}/batch-{uuid.uuid4().hex}/"
    world.s3.put_object(Bucket=BUCKET, Key=folder + "b.json", Body=json.dumps(AUTHORS[1:]).encode())
    world.s3.put_object(Bucket=BUCKET, Key=folder + "a.jsonl", Body=(json.dumps(AUTHORS[0]) + "\n").encode())
    world.s3.put_object(Bucket=BUCKET, Key=folder + "sub/", Body=b"")  # a folder marker, skipped
    item = world.make_job(num_records=4, batch_size=3, seed_data_path=folder)

    result = make_service().run(item, start(world, item))

    assert result.outcome is Outcome.SUCCEEDED
    prompts = [r["steps"]["bio"]["prompt"] for r in world.part_records(item.job_id)]
    names = [a["author"]["name"] for a in AUTHORS]
    assert prompts == [
        f"Write a short biography of {n} ({a['author']['field']})."
        for n, a in zip([*names, names[0]], [*AUTHORS, AUTHORS[0]], strict=True)
    ]


def test_a_template_step_naming_a_model_alias_is_billed_as_its_bedrock_model(world: World, make_service: Any):
    steps = [{"id": "bio", "prompt": "A bio of {{ author.name }}.", "model": "claude-3.5-sonnet"}]
    item = world.make_job(num_records=2, batch_size=2, steps=steps)

    result = make_service().run(item, start(world, item))

    assert result.outcome is Outcome.SUCCEEDED
    assert {r["steps"]["bio"]["model"] for r in world.part_records(item.job_id)} == {CLAUDE_3_5_SONNET}


def test_a_multi_step_template_passes_step_one_output_to_step_two(world: World, make_service: Any):
    item = world.make_job(num_records=4, batch_size=4, steps=TWO_STEPS)

    result = make_service().run(item, start(world, item))

    assert result.outcome is Outcome.SUCCEEDED
    records = world.part_records(item.job_id)
    assert len(records) == 4
    for record in records:
        draft, summary = record["steps"]["draft"], record["steps"]["summary"]
        assert summary["prompt"] == f"Summarize in one line: {draft['output']}"
        assert draft["model"] == LLAMA_3_1_8B
        assert summary["model"] == CLAUDE_3_5_SONNET
    # The delta prices each step at its own model.
    delta = world.deltas(item.job_id)[0]
    assert delta["model_id"] == f"{CLAUDE_3_5_SONNET},{LLAMA_3_1_8B}"
    assert delta["cost"]["bedrock"] > 0


class _CountingProvider:
    """The offline provider, counting calls and running a hook before each (test collaborator)."""

    def __init__(self, hook: Any = None) -> None:
        self.calls = 0
        self._inner = OfflineProvider()
        self._hook = hook

    def complete(self, model: ModelPrice, prompt: str, seed_record: Mapping[str, Any]) -> Completion:
        self.calls += 1
        if self._hook:
            self._hook(self.calls)
        return self._inner.complete(model, prompt, seed_record)


MIXED_SEEDS = [
    {"kind": "plain", "name": "Ada"},
    {"kind": "mro", "name": "Eve"},
    {"kind": "globals", "name": "Mallory"},
    {"kind": "bomb", "name": "Trudy"},
]
MIXED_PROMPT = (
    "{% if kind == 'mro' %}{{ ''.__class__.__mro__ }}"
    "{% elif kind == 'globals' %}{{ cycler.__init__.__globals__ }}"
    "{% elif kind == 'bomb' %}"
    "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
    "{% else %}Hello {{ name }}{% endif %}"
)


def test_sandbox_escapes_and_a_template_bomb_fail_their_records_quickly_and_are_counted(
    world: World, make_service: Any
):
    item = world.make_job(
        num_records=8, batch_size=4, seeds=MIXED_SEEDS, steps=[{"id": "s", "prompt": MIXED_PROMPT}]
    )
    provider = _CountingProvider()

    began = time.monotonic()
    result = make_service(provider=provider).run(item, start(world, item))
    elapsed = time.monotonic() - began

    assert result.outcome is Outcome.SUCCEEDED
    assert result.records_generated == 2  # the two "plain" records
    assert result.records_failed == 6
    assert provider.calls == 2  # nothing that failed to render reached the model
    assert elapsed < 5  # two bombs, each stopped at the 0.5 s render limit
    records = world.part_records(item.job_id)
    assert [r["steps"]["s"]["prompt"] for r in records] == ["Hello Ada", "Hello Ada"]
    failures = [f for key in world.keys(f"jobs/{item.job_id}/errors/") for f in world.read_jsonl(key)]
    by_kind = {MIXED_SEEDS[f["seed_index"]]["kind"]: f["error"] for f in failures}
    assert "__class__" in by_kind["mro"]
    assert "unsafe" in by_kind["mro"]
    assert "__init__" in by_kind["globals"]
    assert "unsafe" in by_kind["globals"]
    assert "longer than 0.5 s" in by_kind["bomb"]
    assert sum(int(d.get("records_failed", 0)) for d in world.deltas(item.job_id)) == 6
    export = world.read_jsonl(result.output_key)
    assert len(export) == 2


def test_a_template_that_fails_every_record_stops_the_job(world: World, make_service: Any):
    item = world.make_job(
        num_records=9, batch_size=3, steps=[{"id": "s", "prompt": "{{ ''.__class__.__mro__ }}"}]
    )

    result = make_service().run(item, start(world, item))

    assert result.outcome is Outcome.FAILED
    assert result.error == GENERATION_FAILED
    assert "every record of batch 0 failed" in (result.cause or "")
    assert "unsafe" in (result.cause or "")
    # Batch 1 may have been admitted while batch 0 was in flight: it is committed too (every
    # admitted record is accounted for), and nothing after it.
    parts = world.parts(item.job_id)
    assert 1 <= len(parts) <= 2
    assert len(world.deltas(item.job_id)) == len(parts)


def test_cancellation_mid_run_stops_within_one_batch(world: World, make_service: Any):
    item = world.make_job(num_records=20, batch_size=4)

    def cancel_during_second_batch(call: int) -> None:
        if call == 6:  # record 6 is in batch 1 (records 4..7)
            world.request_cancel(item.job_id)

    result = make_service(provider=_CountingProvider(cancel_during_second_batch)).run(
        item, start(world, item)
    )

    assert result.outcome is Outcome.FAILED
    assert result.error == JOB_CANCELLED
    # Batch 1 is committed with the records that had started when the cancel was seen (records run
    # concurrently, so at least up to record 5, whose call made the request, and at most its last,
    # record 7); batch 2 never started.
    assert world.parts(item.job_id) == [part_key(item.job_id, 0), part_key(item.job_id, 1)]
    assert 6 <= result.records_generated <= 8
    assert [d["record_id"] for d in world.deltas(item.job_id)] == ["00000000", "00000001"]
    assert world.keys(f"jobs/{item.job_id}/exports/") == []


class _RollingUpCostStore(CostStore):
    """Delivers every delta to the real cost rollup right after it is written, as the stream does."""

    def __init__(self, world: World) -> None:
        super().__init__(world.ddb, COST_TABLE)
        self._world = world
        self._rollup = CostRollupService(CostRepository(world.ddb, COST_TABLE, JOBS_TABLE))

    def put_delta(self, job_id: str, record_id_: str, usage: Usage, **kwargs: Any) -> bool:
        written = super().put_delta(job_id, record_id_, usage, **kwargs)
        item = self._world.ddb.get_item(
            TableName=COST_TABLE, Key={"job_id": {"S": job_id}, "record_id": {"S": record_id_}}
        )["Item"]
        self._rollup.roll_up(CostDelta.model_validate(plain(item)))
        return written


def test_budget_overshoot_is_at_most_one_batch_with_the_real_rollup(world: World, make_service: Any):
    # Price one batch of the uninterrupted job first, then give a budget of 2.5 batches.
    probe = world.make_job(num_records=4, batch_size=4)
    make_service().run(probe, start(world, probe))
    batch_cost = world.deltas(probe.job_id)[0]["cost"]
    one_batch = batch_cost["bedrock"] + batch_cost["fargate"] + batch_cost["s3"]
    budget = one_batch * Decimal("2.5")
    item = world.make_job(num_records=40, batch_size=4, budget_limit=budget)

    result = make_service(costs=_RollingUpCostStore(world)).run(item, start(world, item))

    assert result.outcome is Outcome.FAILED
    assert result.error == BUDGET_EXCEEDED
    job = world.job(item.job_id)
    assert job["budget_exceeded"] is True
    spent = job["cost"]["total"]
    assert spent >= budget
    assert spent - budget <= one_batch * Decimal("1.01")  # at most one batch past the budget
    assert len(world.parts(item.job_id)) == 3
    assert world.keys(f"jobs/{item.job_id}/exports/") == []


def test_budget_marker_set_mid_run_stops_the_next_batch(world: World, make_service: Any):
    item = world.make_job(num_records=40, batch_size=5)

    def rollup_marks_budget(call: int) -> None:
        if call == 3:  # during batch 0
            world.update_job(item.job_id, "SET budget_exceeded = :t", {":t": True})

    result = make_service(provider=_CountingProvider(rollup_marks_budget)).run(item, start(world, item))

    assert result.error == BUDGET_EXCEEDED
    assert len(world.parts(item.job_id)) == 1


class _Crash(Exception):
    pass


class _CrashingOutputs(OutputStore):
    """Raises once, like a killed worker, at a chosen point of a chosen batch's commit."""

    def __init__(self, s3: Any, *, batch: int, when: str) -> None:
        super().__init__(s3, BUCKET)
        self._batch = batch
        self._when = when
        self.crashed = False

    def put_checkpoint(self, checkpoint: Checkpoint) -> None:
        due = not self.crashed and checkpoint.next_batch == self._batch + 1
        if due and self._when == "before checkpoint":
            self.crashed = True
            raise _Crash("killed after the delta, before the checkpoint")
        super().put_checkpoint(checkpoint)
        if due and self._when == "after checkpoint":
            self.crashed = True
            raise _Crash("killed between batches")


@pytest.mark.parametrize("when", ["after checkpoint", "before checkpoint"])
def test_a_worker_killed_mid_job_and_restarted_matches_an_uninterrupted_run(
    world: World, make_service: Any, when: str
):
    template_id = world.put_template(TWO_STEPS)
    seed = world.put_seed(AUTHORS)
    clean = world.make_job(num_records=10, batch_size=3, template_id=template_id, seed_data_path=seed)
    assert make_service().run(clean, start(world, clean)).outcome is Outcome.SUCCEEDED

    item = world.make_job(num_records=10, batch_size=3, template_id=template_id, seed_data_path=seed)
    control = start(world, item)
    crashing = _CrashingOutputs(world.s3, batch=1, when=when)
    with pytest.raises(_Crash):
        make_service(outputs=crashing).run(item, control)
    assert len(world.parts(item.job_id)) == 2

    # A new worker process: fresh collaborators, the same work item.
    result = make_service().run(item, start(world, item))

    assert result.outcome is Outcome.SUCCEEDED
    assert result.records_generated == 10
    records = world.read_jsonl(result.output_key)
    assert len(records) == 10
    assert [r["id"] for r in records] == [record_id(item.job_id, p) for p in range(10)]
    assert [r["seed_index"] for r in records] == [p % 3 for p in range(10)]
    assert [r["record_id"] for r in world.deltas(item.job_id)] == [f"{b:08d}" for b in range(4)] + ["export"]
    assert world.total_cost(item.job_id) == world.total_cost(clean.job_id)
