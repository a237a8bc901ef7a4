"""The DynamoDB Streams failure-handling shim (local/shims/stream_batches.py) on a real MiniStack 1.5.33.

A real table with a stream, a real ESM and a real Lambda (run by MiniStack) that fails on purpose.
Without the shim, a reported item failure is dropped and a raising batch blocks the shard forever.
"""

from __future__ import annotations

import contextlib
import io
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.emulator import Emulator, start_emulator

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

HANDLER = """
import boto3
log = boto3.client("dynamodb")

def _bump(key, field):
    answer = log.update_item(
        TableName="shim-log", Key={"id": {"S": key}},
        UpdateExpression=f"ADD {field} :one", ExpressionAttributeValues={":one": {"N": "1"}},
        ReturnValues="UPDATED_NEW")
    return int(answer["Attributes"][field]["N"])

def handler(event, context):
    failures = []
    for record in event["Records"]:
        image = record["dynamodb"]["NewImage"]
        key = image["id"]["S"]
        attempt = _bump(key, "attempts")
        mode = image.get("mode", {}).get("S", "ok")
        if mode == "raise":
            raise RuntimeError("poison record " + key)
        if mode == "report-once" and attempt == 1:
            failures.append({"itemIdentifier": record["dynamodb"]["SequenceNumber"]})
            continue
        _bump(key, "done")
    return {"batchItemFailures": failures}
"""


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emulator = start_emulator()
    try:
        yield emulator
    finally:
        emulator.stop()


def _function_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("shim_handler.py", HANDLER)
    return buffer.getvalue()


def _setup(emulator: Emulator, name: str, **mapping: Any) -> tuple[Any, str]:
    ddb, lam = emulator.client("dynamodb"), emulator.client("lambda")
    for table, stream in ((name, True), ("shim-log", False)):
        with contextlib.suppress(ddb.exceptions.ResourceInUseException):
            ddb.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
                **(
                    {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}}
                    if stream
                    else {}
                ),
            )
    lam.create_function(
        FunctionName=f"{name}-consumer",
        Runtime="python3.12",
        Role="arn:aws:iam::000000000000:role/shim",
        Handler="shim_handler.handler",
        Code={"ZipFile": _function_zip()},
        Timeout=30,
    )
    stream_arn = ddb.describe_table(TableName=name)["Table"]["LatestStreamArn"]
    return ddb, lam.create_event_source_mapping(
        FunctionName=f"{name}-consumer",
        EventSourceArn=stream_arn,
        StartingPosition="TRIM_HORIZON",
        **mapping,
    )["UUID"]


def _log(ddb: Any, key: str) -> dict[str, int]:
    item = ddb.get_item(TableName="shim-log", Key={"id": {"S": key}}).get("Item", {})
    return {field: int(value["N"]) for field, value in item.items() if field != "id"}


def _wait(probe: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.3)
    pytest.fail(f"not reached within {timeout:.0f} s")


def _drain(ddb: Any, table: str) -> None:
    """Wait until every record written so far is through: a shard delivers in order, so once a
    sentinel written now is done, no earlier record has a delivery left (no sleep-and-hope)."""
    sentinel = f"{table}-sentinel-{time.monotonic_ns()}"
    ddb.put_item(TableName=table, Item={"id": {"S": sentinel}, "mode": {"S": "ok"}})
    _wait(lambda: _log(ddb, sentinel).get("done") == 1)


def test_reported_item_failure_is_retried_from_the_first_failure(emulator: Emulator) -> None:
    ddb, _ = _setup(emulator, "shim-report", BatchSize=10, FunctionResponseTypes=["ReportBatchItemFailures"])
    for key, mode in (("r-a", "ok"), ("r-b", "report-once"), ("r-c", "ok")):
        ddb.put_item(TableName="shim-report", Item={"id": {"S": key}, "mode": {"S": mode}})
    _wait(lambda: _log(ddb, "r-b").get("done") == 1 and _log(ddb, "r-c").get("done", 0) >= 1)
    _drain(ddb, "shim-report")
    assert _log(ddb, "r-a") == {"attempts": 1, "done": 1}  # checkpointed before the failure
    assert _log(ddb, "r-b") == {"attempts": 2, "done": 1}  # retried, then succeeded
    assert _log(ddb, "r-c")["done"] >= 1  # after the failure: re-delivered with the retry, as on AWS


def test_poison_batch_is_discarded_after_maximum_retry_attempts(emulator: Emulator) -> None:
    ddb, _ = _setup(emulator, "shim-poison", BatchSize=1, MaximumRetryAttempts=2)
    ddb.put_item(TableName="shim-poison", Item={"id": {"S": "p-poison"}, "mode": {"S": "raise"}})
    ddb.put_item(TableName="shim-poison", Item={"id": {"S": "p-after"}, "mode": {"S": "ok"}})
    _wait(lambda: _log(ddb, "p-after").get("done") == 1)  # the shard is not blocked
    _drain(ddb, "shim-poison")
    assert _log(ddb, "p-poison") == {"attempts": 3}  # the first try and 2 retries, then discarded
    assert _log(ddb, "p-after") == {"attempts": 1, "done": 1}


def test_bisect_isolates_the_poison_record(emulator: Emulator) -> None:
    ddb, mapping = _setup(
        emulator,
        "shim-bisect",
        BatchSize=4,
        MaximumRetryAttempts=0,
        BisectBatchOnFunctionError=True,
        Enabled=False,  # all four records first, so the first batch is exactly [1, 2, P, 4]
    )
    keys = ["b-1", "b-2", "b-poison", "b-4"]
    for key in keys:
        mode = "raise" if key == "b-poison" else "ok"
        ddb.put_item(TableName="shim-bisect", Item={"id": {"S": key}, "mode": {"S": mode}})
    emulator.client("lambda").update_event_source_mapping(UUID=mapping, Enabled=True)
    _wait(lambda: all(_log(ddb, k).get("done", 0) >= 1 for k in ("b-1", "b-2", "b-4")))
    _drain(ddb, "shim-bisect")
    # [1, 2, P, 4] fails -> [1, 2] succeeds -> [P, 4] fails -> [P] fails with no retries left and is
    # discarded (splitting does not count as a retry) -> [4] succeeds. The records a failed batch
    # had already handled are handled again: at-least-once, as on AWS.
    assert _log(ddb, "b-poison") == {"attempts": 3}
    assert _log(ddb, "b-4") == {"attempts": 1, "done": 1}  # never reached in a failing batch
    assert _log(ddb, "b-1")["done"] == 2


def test_records_written_after_a_restart_are_delivered(tmp_path: Path) -> None:
    """MiniStack persists a mapping's position but not the stream: the shim rewinds on restore."""
    first = start_emulator(state_dir=tmp_path)
    try:
        ddb, _ = _setup(first, "shim-restart", BatchSize=10)
        for n in range(5):  # move the mapping's position well past where the new stream starts
            ddb.put_item(TableName="shim-restart", Item={"id": {"S": f"before-{n}"}})
        _wait(lambda: all(_log(ddb, f"before-{n}").get("done") == 1 for n in range(5)))
    finally:
        first.stop()  # a clean stop saves the state

    second = start_emulator(state_dir=tmp_path)
    try:
        ddb = second.client("dynamodb")
        ddb.put_item(TableName="shim-restart", Item={"id": {"S": "after"}})
        _wait(lambda: _log(ddb, "after").get("done") == 1)
        _drain(ddb, "shim-restart")
        assert _log(ddb, "after") == {"attempts": 1, "done": 1}
        assert _log(ddb, "before-0") == {"attempts": 1, "done": 1}  # nothing replayed
    finally:
        second.stop()
