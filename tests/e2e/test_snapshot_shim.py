"""local/shims/snapshots.py on a bare MiniStack: a kill -9 loses at most the snapshot window.

Each emulator here is killed with SIGKILL (no shutdown save) and a new one is started on the same
state dir; a 1 s window keeps the test short.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from local.emulator import Emulator, start_emulator
from local.shims.snapshots import SNAPSHOT_SECONDS_ENV

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

WINDOW = 1.0
TABLE = "snapshot-check"


def _start(state_dir: Path, window: float = WINDOW) -> Emulator:
    return start_emulator(
        state_dir=state_dir,
        log_path=state_dir / "emulator.log",
        extra_env={SNAPSHOT_SECONDS_ENV: f"{window:g}"},
    )


def _kill_9(emulator: Emulator) -> None:
    emulator.process.kill()
    emulator.process.wait(timeout=10)
    emulator.stop()  # closes the log; the process is gone already


def _write_state(emulator: Emulator) -> None:
    ddb = emulator.client("dynamodb")
    ddb.create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "job-1"}, "status": {"S": "QUEUED"}})
    sqs = emulator.client("sqs")
    sqs.send_message(
        QueueUrl=sqs.create_queue(QueueName="snapshot-work")["QueueUrl"], MessageBody="work item"
    )
    s3 = emulator.client("s3")
    s3.create_bucket(Bucket="snapshot-data")
    s3.put_object(Bucket="snapshot-data", Key="seed-data/u/a.jsonl", Body=b'{"a": 1}\n')


def _item(emulator: Emulator) -> dict[str, Any] | None:
    ddb = emulator.client("dynamodb")
    if TABLE not in ddb.list_tables()["TableNames"]:
        return None
    return ddb.get_item(TableName=TABLE, Key={"pk": {"S": "job-1"}}).get("Item")


def test_a_kill_9_after_the_window_keeps_tables_queues_and_objects(tmp_path: Path) -> None:
    emulator = _start(tmp_path)
    try:
        _write_state(emulator)
        time.sleep(WINDOW * 2.5)
    finally:
        _kill_9(emulator)
    assert json.loads((tmp_path / "dynamodb.json").read_text())["payload"]
    assert not list(tmp_path.glob("*.snapshot"))

    restarted = _start(tmp_path)
    try:
        assert _item(restarted) == {"pk": {"S": "job-1"}, "status": {"S": "QUEUED"}}
        sqs = restarted.client("sqs")
        url = sqs.get_queue_url(QueueName="snapshot-work")["QueueUrl"]
        assert [m["Body"] for m in sqs.receive_message(QueueUrl=url).get("Messages", [])] == ["work item"]
        body = restarted.client("s3").get_object(Bucket="snapshot-data", Key="seed-data/u/a.jsonl")["Body"]
        assert body.read() == b'{"a": 1}\n'
        # The restarted emulator snapshots too, and never over the restored state with an empty one.
        time.sleep(WINDOW * 2.5)
    finally:
        _kill_9(restarted)
    again = _start(tmp_path)
    try:
        assert _item(again) == {"pk": {"S": "job-1"}, "status": {"S": "QUEUED"}}
    finally:
        again.stop()


def test_without_snapshots_a_kill_9_loses_what_changed_since_the_start(tmp_path: Path) -> None:
    """What the shim is for: MiniStack alone saves on a clean stop only."""
    emulator = _start(tmp_path, window=0)
    try:
        _write_state(emulator)
        time.sleep(WINDOW * 2.5)
    finally:
        _kill_9(emulator)
    restarted = _start(tmp_path, window=0)
    try:
        assert _item(restarted) is None
    finally:
        restarted.stop()


def test_a_clean_stop_right_after_a_change_still_saves_it(tmp_path: Path) -> None:
    """MiniStack's shutdown save is the last word: a snapshot never runs after (or over) it."""
    emulator = _start(tmp_path)
    try:
        time.sleep(WINDOW * 1.5)  # a snapshot has run
        _write_state(emulator)
    finally:
        emulator.stop()  # SIGTERM: MiniStack saves on its way out
    restarted = _start(tmp_path)
    try:
        assert _item(restarted) == {"pk": {"S": "job-1"}, "status": {"S": "QUEUED"}}
    finally:
        restarted.stop()
