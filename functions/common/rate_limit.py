"""Per-user rate limits: fixed windows counted atomically in DynamoDB.

A limit is one or more windows (e.g. 10 a minute and 200 a day). Each window of each user is one
item, ``id = "rate-limit#{scope}#{user}#{seconds}#{window start}"``, in the short-lived records
table (the Idempotency table: partition key ``id``, TTL attribute ``expiration``; the prefix never
collides with Powertools' idempotency keys). ``acquire`` adds 1 to every window's counter in one
transaction, each on condition the counter is below its limit, so a refused request counts in no
window and concurrent requests can never pass a limit together. Items expire (TTL) one window
after their window ends.

Fixed windows admit at most twice a window's limit across a window boundary; that is the accepted
price of one write per request.

``count`` gives the same counter updates as transaction items, for a caller that counts a request
in the transaction that does the request's own writes (the jobs API's create): then a request
refused for any reason counts nowhere, and a counted one is exactly a committed one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from functions.common.dynamo import TransactionConflictError, cancellation_codes, to_attribute, to_item
from functions.common.errors import TooManyRequestsError
from functions.common.retry import RetryPolicy

KEY_PREFIX = "rate-limit"
# The same user's concurrent requests update the same counters, so their transactions may conflict.
CONFLICT_RETRY = RetryPolicy(attempts=5, base_delay=0.02)


@dataclass(frozen=True)
class Window:
    seconds: int
    limit: int

    def describe(self) -> str:
        unit = {60: "minute", 3600: "hour", 86400: "day"}.get(self.seconds, f"{self.seconds} s")
        return f"{self.limit} per {unit}"


@dataclass(frozen=True)
class RateCount:
    """One request's counter updates (``items``, one per window, in window order), to be written in
    a caller's transaction; ``refusal`` reads their cancellation codes."""

    items: tuple[dict[str, Any], ...]
    limiter: RateLimiter
    now: float
    starts: tuple[int, ...]

    def refusal(self, codes: Sequence[str]) -> TooManyRequestsError | None:
        """The 429 to answer when a window's condition failed (``codes`` are the items' own), else None."""
        full = [i for i, code in enumerate(codes) if code == "ConditionalCheckFailed"]
        return self.limiter.refusal(self.now, self.starts, full) if full else None


class RateLimiter:
    def __init__(
        self,
        dynamodb_client: Any,
        table_name: str,
        *,
        scope: str,
        windows: Sequence[Window],
        clock: Callable[[], float] = time.time,
        retry: RetryPolicy = CONFLICT_RETRY,
    ) -> None:
        if not windows:
            raise ValueError("a rate limit needs at least one window")
        self._ddb = dynamodb_client
        self._table = table_name
        self._scope = scope
        self._windows = tuple(windows)
        self._clock = clock
        self._retry = retry

    @property
    def windows(self) -> tuple[Window, ...]:
        return self._windows

    def acquire(self, user_id: str) -> None:
        """Count one request of ``user_id``, or raise ``TooManyRequestsError`` (429, Retry-After)
        when a window is full; a refused request is counted nowhere."""
        count = self.count(user_id)
        self._retry.call(lambda: self._write(count), retry_on=TransactionConflictError)

    def count(self, user_id: str) -> RateCount:
        """The updates that count one request of ``user_id`` now, each conditional on its window."""
        now = self._clock()
        starts = tuple(int(now // w.seconds) * w.seconds for w in self._windows)
        items = tuple(
            self._increment(user_id, w, start) for w, start in zip(self._windows, starts, strict=True)
        )
        return RateCount(items=items, limiter=self, now=now, starts=starts)

    def _write(self, count: RateCount) -> None:
        try:
            self._ddb.transact_write_items(TransactItems=list(count.items))
        except ClientError as error:
            codes = cancellation_codes(error)
            if codes is None:
                raise
            refusal = count.refusal(codes)
            if refusal is not None:
                raise refusal from None
            if "TransactionConflict" in codes:
                raise TransactionConflictError(error) from error
            raise

    def _increment(self, user_id: str, window: Window, start: int) -> dict[str, Any]:
        key = f"{KEY_PREFIX}#{self._scope}#{user_id}#{window.seconds}#{start}"
        values = {":one": 1, ":limit": window.limit, ":expires": start + 2 * window.seconds}
        return {
            "Update": {
                "TableName": self._table,
                "Key": {"id": to_attribute(key)},
                "UpdateExpression": "ADD #count :one SET #expiration = :expires",
                "ConditionExpression": "attribute_not_exists(#count) OR #count < :limit",
                "ExpressionAttributeNames": {"#count": "request_count", "#expiration": "expiration"},
                "ExpressionAttributeValues": to_item(values),
            }
        }

    def refusal(self, now: float, starts: Sequence[int], full: Sequence[int]) -> TooManyRequestsError:
        # Every full window must have rolled over before a retry can pass.
        retry_after = max(math.ceil(starts[i] + self._windows[i].seconds - now) for i in full)
        retry_after = max(retry_after, 1)
        window = self._windows[full[0]]
        return TooManyRequestsError(
            f"Rate limit reached: {window.describe()}; retry in {retry_after} s",
            retry_after_seconds=retry_after,
            details={"limit": window.limit, "window_seconds": window.seconds, "retry_after": retry_after},
        )
