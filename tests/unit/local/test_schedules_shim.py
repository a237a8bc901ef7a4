"""The schedules shim: a rate() rule deployed by CloudFormation fires on the first sweep after the
emulator starts, then once per period (MiniStack's own sweep, patched in this process)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.unit


@pytest.fixture
def eventbridge(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from ministack.services import eventbridge as module

    monkeypatch.setattr(module, "_tick_scheduled_rules", module._tick_scheduled_rules)
    monkeypatch.setattr(module, "_rule_last_fired", {})
    module._rules.clear()
    module._targets.clear()
    yield module
    module._rules.clear()
    module._targets.clear()


def test_a_cloudformation_schedule_fires_at_startup_then_every_minute(
    eventbridge: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ministack.services.cloudformation.provisioners import _eb_rule_create

    from local.shims import schedules

    target = {
        "Arn": "arn:aws:lambda:us-east-1:000000000000:function:plot-palette-local-reconciler",
        "Id": "T0",
    }
    _eb_rule_create(
        "Schedule", {"Name": "reconcile", "ScheduleExpression": "rate(1 minute)", "Targets": [target]}, "s"
    )
    fired: list[float] = []
    clock = [1_000_000.0]
    monkeypatch.setattr(eventbridge, "_now_ts", lambda: clock[0])
    monkeypatch.setattr(eventbridge, "_invoke_target", lambda *args, **kwargs: fired.append(clock[0]))
    schedules.install()

    for offset in (0, 10, 20, 50, 60, 70):  # the emulator sweeps every 10 s
        clock[0] = 1_000_000.0 + offset
        eventbridge._tick_scheduled_rules()

    assert fired == [1_000_000.0, 1_000_060.0]
