"""One retry policy: exponential backoff with full jitter, its clock and randomness injectable.

Tests pass ``sleep`` (and ``jitter``) so no test waits for real time.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 0.05
    max_delay: float = 20.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    jitter: Callable[[float, float], float] = field(default=random.uniform, repr=False)

    def pause(self, attempt: int) -> None:
        """Wait before attempt ``attempt + 1`` (full jitter: uniform in [0, capped exponential])."""
        self.sleep(self.jitter(0, min(self.max_delay, self.base_delay * 2**attempt)))

    def call(self, action: Callable[[], T], retry_on: type[Exception] | tuple[type[Exception], ...]) -> T:
        """``action()``, again after a pause while it raises ``retry_on``; the last error propagates."""
        for attempt in range(self.attempts - 1):
            try:
                return action()
            except retry_on:
                self.pause(attempt)
        return action()
