"""Scheduled EventBridge rules fire at startup, then at their rate (MiniStack 1.5.33 waits a period).

MiniStack fires ``rate()`` rules from a background sweep every 10 s, counting the first period from
the rule's ``CreationTime``. Rules created by CloudFormation have none, so the countdown starts at
the first sweep: the reconciler's one-minute schedule would first run a minute after every start of
``plot-palette local``, while jobs left RUNNING by the previous run wait. This shim gives such
rules a creation time of 0, so each fires on the first sweep after the emulator starts (within
10 s, fresh or restored), then every period as before. On AWS a new rule fires within its first
period; firing once more at startup only makes the local runtime reconcile sooner.
"""

from __future__ import annotations

from typing import Any

from local.shims import require_version


def install() -> None:
    require_version(__name__)
    from ministack.services import eventbridge

    original = eventbridge._tick_scheduled_rules

    def tick() -> Any:
        for rule in list(eventbridge._rules._data.values()):
            if rule.get("ScheduleExpression", "").startswith("rate(") and "CreationTime" not in rule:
                rule["CreationTime"] = 0
        return original()

    eventbridge._tick_scheduled_rules = tick
