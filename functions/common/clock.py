"""Timestamps. Every stored time is an ISO-8601 UTC string with milliseconds, ``...T12:00:00.123Z``.

That is the format Step Functions' ``$$.State.EnteredTime`` produces, so times written by Lambdas
and by state machines sort together as plain strings.
"""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def to_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def now_iso() -> str:
    return to_iso(now())


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
