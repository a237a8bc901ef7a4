"""The worker side of partitioned jobs against moto: partition work items generate their own range
from their own checkpoint, the export item joins every committed part in record order into the
files the job asked for (partition_strategy, compression, include_prompts) and answers the final
counts and cost; the budget is read from the rolled-up cost of every partition."""

from __future__ import annotations

import csv
import gzip
import io
import json
from decimal import Decimal
from typing import Any

import pyarrow.parquet as pq
import pytest

from functions.common.storage import OutputFormat
from functions.worker.models import Checkpoint, Outcome, WorkItem
from functions.worker.repository import JobStore, OutputStore
from functions.worker.service import BUDGET_EXCEEDED, EXPORT_INCOMPLETE, StopSignal
from tests.integration.worker.conftest import (
    BUCKET,
    JOBS_TABLE,
    TWO_STEPS,
    World,
    make_loop,
    record_id_list,
    send,
    start,
)

pytestmark = pytest.mark.integration


def partition(item: WorkItem, number: int, first: int, end: int, **extra: Any) -> WorkItem:
    return WorkItem.model_validate(
        {
            **item.model_dump(),
            "kind": "partition",
            "partition": number,
            "first_batch": first,
            "end_batch": end,
        }
        | extra
    )


def export(item: WorkItem, partial: bool = False) -> WorkItem:
    return WorkItem.model_validate({**item.model_dump(), "kind": "export", "partial": partial})


def run_partitions(world: World, service: Any, item: WorkItem, ranges: list[tuple[int, int]]) -> list[Any]:
    return [
        service.run(part, start(world, part))
        for part in (partition(item, n, first, end) for n, (first, end) in enumerate(ranges))
    ]


def set_options(world: World, job_id: str, strategy: str, config: dict[str, Any]) -> None:
    world.update_job(
        job_id, "SET partition_strategy = :p, export_config = :c", {":p": strategy, ":c": config}
    )


def test_each_partition_generates_its_own_range_and_keeps_its_own_checkpoint(world: World, make_service: Any):
    item = world.make_job(num_records=10, batch_size=2)  # batches 0..4
    service = make_service()

    results = run_partitions(world, service, item, [(0, 2), (2, 4), (4, 5)])

    assert [(r.outcome, r.records_generated) for r in results] == [(Outcome.SUCCEEDED, n) for n in (4, 4, 2)]
    assert [r.output_key for r in results] == [None] * 3  # a partition has no export of its own
    assert [d["record_id"] for d in world.deltas(item.job_id)] == [f"{b:08d}" for b in range(5)]
    records = world.part_records(item.job_id)
    assert [r["id"] for r in records] == record_id_list(item.job_id, 10)
    assert [r["seed_index"] for r in records] == [p % 3 for p in range(10)]  # positions, seeds cycled
    outputs = OutputStore(world.s3, BUCKET)
    checkpoints = [outputs.get_checkpoint(item.job_id, n) for n in range(3)]
    assert [(c.partition, c.next_batch, c.usage.records) for c in checkpoints if c] == [
        (0, 2, 4),
        (1, 4, 4),
        (2, 5, 2),
    ]
    assert outputs.get_checkpoint(item.job_id) is None  # no whole-job checkpoint


def test_a_partition_resumes_from_its_checkpoint_without_redoing_or_rebilling(
    world: World, make_service: Any
):
    item = world.make_job(num_records=8, batch_size=2)
    part = partition(item, 1, 2, 4)
    stop = StopSignal()
    calls: list[int] = []
    first = make_service(on_batch=lambda: stop.request("shutdown"))

    abandoned = first.run(part, start(world, part), stop)
    assert abandoned.outcome is Outcome.ABANDONED
    checkpoint = OutputStore(world.s3, BUCKET).get_checkpoint(item.job_id, 1)
    assert checkpoint is not None
    assert checkpoint.next_batch == 3

    second = make_service(on_progress=lambda: calls.append(1))
    resumed = second.run(part, start(world, part))

    assert (resumed.outcome, resumed.records_generated) == (Outcome.SUCCEEDED, 4)
    assert len(calls) == 2  # only batch 3's two records were generated again
    assert [d["record_id"] for d in world.deltas(item.job_id)] == ["00000002", "00000003"]


def test_the_export_joins_partitions_done_in_any_order_in_record_order(world: World, make_service: Any):
    item = world.make_job(num_records=7, batch_size=2, steps=TWO_STEPS)  # batches 0..3
    service = make_service()
    for number, (first, end) in reversed(list(enumerate([(0, 2), (2, 3), (3, 4)]))):
        part = partition(item, number, first, end)
        assert service.run(part, start(world, part)).outcome is Outcome.SUCCEEDED

    joined = export(item)
    result = service.run(joined, world_control(world, item))

    key = f"jobs/{item.job_id}/exports/dataset.jsonl"
    assert (result.outcome, result.records_generated, result.output_key, result.files) == (
        Outcome.SUCCEEDED,
        7,
        key,
        1,
    )
    assert [r["id"] for r in world.read_jsonl(key)] == record_id_list(item.job_id, 7)
    spent = world.total_cost(item.job_id)  # the export's own delta included
    assert [d["record_id"] for d in world.deltas(item.job_id)][-1] == "export"
    assert result.final_usage is not None
    assert result.final_usage.total == spent["bedrock"] + spent["fargate"] + spent["s3"]
    assert (
        result.final_usage.tokens_in + result.final_usage.tokens_out
        == spent["tokens_in"] + spent["tokens_out"]
    )


def world_control(world: World, item: WorkItem) -> Any:
    control = JobStore(world.ddb, JOBS_TABLE).read_control(item.job_id)
    assert control is not None
    return control


def test_a_complete_export_refuses_a_job_with_a_batch_missing(world: World, make_service: Any):
    item = world.make_job(num_records=6, batch_size=2)
    service = make_service()
    run_partitions(world, service, item, [(0, 2)])  # batch 2 never ran

    result = service.run(export(item), world_control(world, item))

    assert (result.outcome, result.error) == (Outcome.FAILED, EXPORT_INCOMPLETE)
    assert world.keys(f"jobs/{item.job_id}/exports/") == []


def test_a_partial_export_holds_exactly_the_committed_batches(world: World, make_service: Any):
    item = world.make_job(num_records=6, batch_size=2)
    service = make_service()
    run_partitions(world, service, item, [(0, 1)])
    part = partition(item, 2, 2, 3)
    service.run(part, start(world, part))  # batches 0 and 2 committed, 1 did not

    result = service.run(export(item, partial=True), world_control(world, item))

    records = world.read_jsonl(f"jobs/{item.job_id}/exports/dataset.jsonl")
    ids = record_id_list(item.job_id, 6)
    assert [r["id"] for r in records] == [ids[0], ids[1], ids[4], ids[5]]
    assert (result.outcome, result.records_generated, result.files) == (Outcome.SUCCEEDED, 4, 1)


def test_a_partial_export_of_nothing_writes_no_file_and_bills_nothing(world: World, make_service: Any):
    item = world.make_job(num_records=4, batch_size=2)

    result = make_service().run(export(item, partial=True), world_control(world, item))

    assert (result.outcome, result.records_generated, result.files) == (Outcome.SUCCEEDED, 0, 0)
    assert result.success_output()["output_key"] == ""
    assert world.keys(f"jobs/{item.job_id}/exports/") == []
    assert world.deltas(item.job_id) == []


def read_rows(world: World, key: str, fmt: OutputFormat) -> list[dict[str, Any]]:
    body = world.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    if key.endswith(".gz"):
        body = gzip.decompress(body)
    if fmt is OutputFormat.JSONL:
        return [json.loads(line) for line in body.decode().splitlines() if line]
    if fmt is OutputFormat.CSV:
        return list(csv.DictReader(io.StringIO(body.decode())))
    return pq.read_table(io.BytesIO(body)).to_pylist()


@pytest.mark.parametrize("fmt", list(OutputFormat))
def test_records_n_splits_the_export_into_numbered_files_of_n_records(
    world: World, make_service: Any, fmt: OutputFormat
):
    item = world.make_job(num_records=5, batch_size=2, output_format=fmt)
    set_options(world, item.job_id, "records:2", {})
    service = make_service()
    run_partitions(world, service, item, [(0, 3)])

    result = service.run(export(item), world_control(world, item))

    ext = fmt.extension
    keys = [f"jobs/{item.job_id}/exports/dataset-{n:05d}.{ext}" for n in (1, 2, 3)]
    assert world.keys(f"jobs/{item.job_id}/exports/") == keys
    assert (result.files, result.records_generated, result.output_key) == (3, 5, keys[0])
    files = [read_rows(world, key, fmt) for key in keys]
    assert [len(rows) for rows in files] == [2, 2, 1]
    assert [row["id"] for rows in files for row in rows] == record_id_list(item.job_id, 5)


@pytest.mark.parametrize("fmt", [OutputFormat.JSONL, OutputFormat.CSV])
def test_gzip_compresses_jsonl_and_csv_files(world: World, make_service: Any, fmt: OutputFormat):
    item = world.make_job(num_records=3, batch_size=2, output_format=fmt)
    set_options(world, item.job_id, "none", {"compression": "gzip"})
    service = make_service()
    run_partitions(world, service, item, [(0, 2)])

    service.run(export(item), world_control(world, item))

    key = f"jobs/{item.job_id}/exports/dataset.{fmt.extension}.gz"
    assert world.keys(f"jobs/{item.job_id}/exports/") == [key]
    raw = world.s3.get_object(Bucket=BUCKET, Key=key)
    assert raw["Body"].read()[:2] == b"\x1f\x8b"  # a gzip member
    assert [row["id"] for row in read_rows(world, key, fmt)] == record_id_list(item.job_id, 3)


@pytest.mark.parametrize(
    ("compression", "codec"), [(None, "SNAPPY"), ("zstd", "ZSTD"), ("none", "UNCOMPRESSED")]
)
def test_parquet_is_written_with_the_chosen_codec(
    world: World, make_service: Any, compression: str | None, codec: str
):
    item = world.make_job(num_records=3, batch_size=2, output_format=OutputFormat.PARQUET)
    set_options(world, item.job_id, "none", {"compression": compression} if compression else {})
    service = make_service()
    run_partitions(world, service, item, [(0, 2)])

    service.run(export(item), world_control(world, item))

    body = world.s3.get_object(Bucket=BUCKET, Key=f"jobs/{item.job_id}/exports/dataset.parquet")[
        "Body"
    ].read()
    metadata = pq.ParquetFile(io.BytesIO(body)).metadata
    assert metadata.row_group(0).column(0).compression == codec
    assert metadata.num_rows == 3


@pytest.mark.parametrize("fmt", list(OutputFormat))
def test_include_prompts_false_drops_every_prompt(world: World, make_service: Any, fmt: OutputFormat):
    item = world.make_job(num_records=2, batch_size=2, output_format=fmt, steps=TWO_STEPS)
    set_options(world, item.job_id, "none", {"include_prompts": False})
    service = make_service()
    run_partitions(world, service, item, [(0, 1)])

    service.run(export(item), world_control(world, item))

    rows = read_rows(world, f"jobs/{item.job_id}/exports/dataset.{fmt.extension}", fmt)
    assert len(rows) == 2
    for row in rows:
        if fmt is OutputFormat.CSV:
            assert [c for c in row if c.startswith("steps.")] == [
                "steps.draft.output",
                "steps.draft.model",
                "steps.summary.output",
                "steps.summary.model",
            ]
        else:
            assert {step: set(fields) for step, fields in row["steps"].items()} == {
                "draft": {"output", "model"},
                "summary": {"output", "model"},
            }
    # The parts keep the prompts: only the export leaves them out.
    assert all("prompt" in step for r in world.part_records(item.job_id) for step in r["steps"].values())


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_a_jsonl_export_with_every_field_is_the_parts_lines_in_batch_order(
    world: World, make_service: Any, compression: str
):
    """The lines are copied from the parts as they are (not parsed and encoded again), in order."""
    item = world.make_job(num_records=5, batch_size=2)
    set_options(world, item.job_id, "none", {"compression": compression})
    service = make_service()
    run_partitions(world, service, item, [(2, 3), (0, 2)])  # the last partition done first

    service.run(export(item), world_control(world, item))

    suffix = ".gz" if compression == "gzip" else ""
    body = world.s3.get_object(Bucket=BUCKET, Key=f"jobs/{item.job_id}/exports/dataset.jsonl{suffix}")
    exported = body["Body"].read()
    parts = b"".join(
        world.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() for key in world.parts(item.job_id)
    )
    assert (gzip.decompress(exported) if suffix else exported) == parts
    assert [json.loads(line)["id"] for line in parts.splitlines()] == record_id_list(item.job_id, 5)


def test_a_trimmed_jsonl_export_is_compact_json_too(world: World, make_service: Any):
    item = world.make_job(num_records=2, batch_size=2, steps=TWO_STEPS)
    set_options(world, item.job_id, "none", {"include_prompts": False})
    service = make_service()
    run_partitions(world, service, item, [(0, 1)])

    service.run(export(item), world_control(world, item))

    body = world.s3.get_object(Bucket=BUCKET, Key=f"jobs/{item.job_id}/exports/dataset.jsonl")["Body"].read()
    lines = body.decode().splitlines()
    assert [json.loads(line)["id"] for line in lines] == record_id_list(item.job_id, 2)
    assert all(
        line == json.dumps(json.loads(line), ensure_ascii=False, separators=(",", ":")) for line in lines
    )


def test_a_partition_stops_on_the_rolled_up_cost_of_the_other_partitions(world: World, make_service: Any):
    """The budget is spent by other partitions (their deltas rolled up onto the job): this partition
    starts no record once the rolled-up total reaches the limit. Batches overlap (the next batch's
    records start while the last ones of the batch before are in flight), so what it commits after the
    first commit is at most the one batch in flight, never the rest of the partition."""
    item = world.make_job(num_records=16, batch_size=2, budget_limit=Decimal("0.50"))
    part = partition(item, 1, 2, 6)  # batches 2..5

    def other_partitions_rolled_up() -> None:  # what the rollup writes for their deltas meanwhile
        world.ddb.update_item(
            TableName=JOBS_TABLE,
            Key={"job_id": {"S": item.job_id}},
            UpdateExpression="SET #cost.#total = :spent",
            ExpressionAttributeNames={"#cost": "cost", "#total": "total"},
            ExpressionAttributeValues={":spent": {"N": "0.50"}},
        )

    result = make_service(on_batch=other_partitions_rolled_up).run(part, start(world, part))

    assert (result.outcome, result.error) == (Outcome.FAILED, BUDGET_EXCEEDED)
    committed = [d["record_id"] for d in world.deltas(item.job_id)]
    assert committed[0] == "00000002"
    assert committed in (["00000002"], ["00000002", "00000003"])  # batches 4 and 5 never start


def test_the_fargate_share_is_billed_at_the_job_task_size(world: World, make_service: Any):
    costs = {}
    for size in ("small", "xlarge"):
        item = world.make_job(num_records=2, batch_size=2)
        part = partition(item, 0, 0, 1, task_size=size)
        make_service().run(part, start(world, part))
        (delta,) = world.deltas(item.job_id)
        costs[size] = delta["cost"]["fargate"]

    # xlarge has 8x the vCPU and 8x the memory of small; the stepping clock makes both batches last
    # equally long. Deltas are stored to 1e-10 dollars: 8 roundings apart at most.
    assert costs["small"] > 0
    assert abs(costs["xlarge"] - costs["small"] * 8) <= Decimal("8e-10")


def test_an_export_item_does_not_take_the_task_token_or_stop_on_a_cancel(
    world: World, make_service: Any, queue: Any
):
    item = world.make_job(num_records=2, batch_size=2)
    service = make_service()
    run_partitions(world, service, item, [(0, 1)])
    world.request_cancel(item.job_id)
    world.update_job(item.job_id, "SET task_token = :t", {":t": "the partition's token"})
    joined = export(item, partial=True)
    send(queue, joined)
    loop, reporter = make_loop(world, queue, service)

    loop.poll_once()

    ((kind, token, output),) = reporter.answers()
    assert (kind, token, output["records_generated"], output["files"]) == ("success", joined.task_token, 2, 1)
    assert world.job(item.job_id)["task_token"] == "the partition's token"


def test_a_checkpoint_names_its_partition(world: World):
    outputs = OutputStore(world.s3, BUCKET)
    outputs.put_checkpoint(Checkpoint(job_id="job-x", partition=3, next_batch=7))

    assert world.keys("jobs/job-x/") == ["jobs/job-x/checkpoints/partition-00003.json"]
    stored = outputs.get_checkpoint("job-x", 3)
    assert stored is not None
    assert stored.next_batch == 7
