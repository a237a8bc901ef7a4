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
        now = self._clock()
        starts = [int(now // w.seconds) * w.seconds for w in self._windows]
        items = [self._increment(user_id, w, start) for w, start in zip(self._windows, starts, strict=True)]
        self._retry.call(lambda: self._count(items, now, starts), retry_on=TransactionConflictError)

    def _count(self, items: list[dict[str, Any]], now: float, starts: list[int]) -> None:
        try:
            self._ddb.transact_write_items(TransactItems=items)
        except ClientError as error:
            codes = cancellation_codes(error)
            if codes is None:
                raise
            full = [i for i, code in enumerate(codes) if code == "ConditionalCheckFailed"]
            if full:
                raise self._refusal(now, starts, full) from None
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

    def _refusal(self, now: float, starts: list[int], full: list[int]) -> TooManyRequestsError:
        # Every full window must have rolled over before a retry can pass.
        retry_after = max(math.ceil(starts[i] + self._windows[i].seconds - now) for i in full)
        retry_after = max(retry_after, 1)
        window = self._windows[full[0]]
        return TooManyRequestsError(
            f"Rate limit reached: {window.describe()}; retry in {retry_after} s",
            retry_after_seconds=retry_after,
            details={"limit": window.limit, "window_seconds": window.seconds, "retry_after": retry_after},
        )
