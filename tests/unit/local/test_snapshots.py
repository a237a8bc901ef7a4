"""local/shims/snapshots.py: a snapshot replaces every file or none (MiniStack's own file format)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ministack.core import persistence

from local.shims import ShimNotApplicable
from local.shims.snapshots import snapshot_interval, write_snapshot

pytestmark = pytest.mark.unit


def test_every_service_is_written_in_the_format_ministack_loads(tmp_path: Path) -> None:
    assert write_snapshot(str(tmp_path), {"dynamodb": {"tables": {"t": 1}}, "sqs": {"queues": {}}}) == [
        "dynamodb",
        "sqs",
    ]
    saved = json.loads((tmp_path / "dynamodb.json").read_text())
    assert saved == {
        "__ministack_format__": persistence._state_format_version("dynamodb"),
        "payload": {"tables": {"t": 1}},
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dynamodb.json", "sqs.json"]


def test_a_service_that_cannot_be_written_leaves_the_previous_snapshot_whole(tmp_path: Path) -> None:
    write_snapshot(str(tmp_path), {"dynamodb": {"v": 1}, "sqs": {"v": 1}})
    with pytest.raises(TypeError):
        write_snapshot(str(tmp_path), {"dynamodb": {"v": 2}, "sqs": {"v": object()}})
    for name in ("dynamodb", "sqs"):
        assert json.loads((tmp_path / f"{name}.json").read_text())["payload"] == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dynamodb.json", "sqs.json"]


@pytest.mark.parametrize(("raw", "seconds"), [("", 5.0), ("2", 2.0), ("0.5", 0.5), ("0", 0.0)])
def test_the_window_comes_from_the_environment(raw: str, seconds: float) -> None:
    assert snapshot_interval({"PLOT_PALETTE_SNAPSHOT_SECONDS": raw}) == seconds


@pytest.mark.parametrize("raw", ["soon", "-1"])
def test_a_bad_window_keeps_the_shim_out(raw: str) -> None:
    with pytest.raises(ShimNotApplicable, match="PLOT_PALETTE_SNAPSHOT_SECONDS"):
        snapshot_interval({"PLOT_PALETTE_SNAPSHOT_SECONDS": raw})
