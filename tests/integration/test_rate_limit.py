"""Per-user fixed-window rate limits (functions/common/rate_limit.py) against moto."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from functions.common import settings as s
from functions.common.errors import TooManyRequestsError
from functions.common.rate_limit import RateLimiter, Window
from functions.common.retry import RetryPolicy
from tests.support.conflicts import ConflictsFirst

pytestmark = pytest.mark.integration

TABLE = s.IdempotencyTableSettings().idempotency_table


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def counters(aws: Any) -> dict[str, tuple[int, int]]:
    """id -> (request_count, expiration) of every rate-limit item."""
    items = aws.client("dynamodb").scan(TableName=TABLE)["Items"]
    return {i["id"]["S"]: (int(i["request_count"]["N"]), int(i["expiration"]["N"])) for i in items}


def limiter(aws: Any, clock: Clock, ddb: Any = None, **kwargs: Any) -> RateLimiter:
    windows = kwargs.pop("windows", [Window(60, 2), Window(86_400, 5)])
    return RateLimiter(
        ddb or aws.client("dynamodb"), TABLE, scope="test", windows=windows, clock=clock, **kwargs
    )


def test_requests_pass_up_to_the_limit_then_429_until_the_window_rolls_over(aws: Any) -> None:
    clock = Clock(86_400 * 3 + 125.5)  # 5.5 s into a minute window that started at ...120
    limits = limiter(aws, clock)
    limits.acquire("ada")
    limits.acquire("ada")

    with pytest.raises(TooManyRequestsError) as refused:
        limits.acquire("ada")

    assert refused.value.retry_after_seconds == 55  # the window ends at ...180
    assert refused.value.headers == {"Retry-After": "55"}
    assert refused.value.details == {"limit": 2, "window_seconds": 60, "retry_after": 55}
    minute, day = f"rate-limit#test#ada#60#{86_400 * 3 + 120}", f"rate-limit#test#ada#86400#{86_400 * 3}"
    # The refused request counted in neither window; items expire one window after theirs ends.
    assert counters(aws) == {minute: (2, 86_400 * 3 + 240), day: (2, 86_400 * 5)}
    limiter(aws, clock).acquire("grace")  # another user is not limited by ada's requests

    clock.now += 55
    limits.acquire("ada")
    assert counters(aws)[day][0] == 3


def test_a_full_day_window_refuses_until_the_day_ends_even_with_minutes_to_spare(aws: Any) -> None:
    clock = Clock(86_400 * 10)
    limits = limiter(aws, clock)
    for _ in range(5):
        limits.acquire("ada")
        clock.now += 61  # a new minute each time

    with pytest.raises(TooManyRequestsError, match="5 per day") as refused:
        limits.acquire("ada")

    assert refused.value.retry_after_seconds == 86_400 - 5 * 61


def test_a_conflict_with_a_concurrent_request_is_retried_and_counted_once(aws: Any) -> None:
    flaky = ConflictsFirst(aws.client("dynamodb"), conflicts=2)
    limits = limiter(aws, Clock(600.0), ddb=flaky, retry=RetryPolicy(attempts=5, sleep=lambda _: None))

    limits.acquire("ada")

    assert flaky.calls == 3
    assert sorted(count for count, _ in counters(aws).values()) == [1, 1]


def test_conflicts_that_do_not_stop_give_up_and_count_nothing(aws: Any) -> None:
    flaky = ConflictsFirst(aws.client("dynamodb"), conflicts=100)
    with pytest.raises(ClientError):
        limiter(aws, Clock(600.0), ddb=flaky, retry=RetryPolicy(attempts=5, sleep=lambda _: None)).acquire(
            "ada"
        )
    assert counters(aws) == {}
