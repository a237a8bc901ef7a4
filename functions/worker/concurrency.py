"""How many model calls a worker keeps in flight, per model: AIMD, plus optional rate budgets.

One ``ConcurrencyController`` lives as long as the worker process and holds one ``ModelLimiter``
per model. The service admits a job's records while fewer than ``window(models)`` are in flight
(the smallest window among the template's models: a record's steps run one after another, so a
record never has more than one call in flight and each model sees at most its own window).

- **Window (AIMD, as TCP Reno).** It starts at ``initial`` (1) and grows by one per successful
  call until the first throttle (slow start), then by ``increase / window`` per success (about one
  per window's worth of calls). A ``ThrottlingException`` / ``ServiceUnavailableException``
  multiplies it by ``decrease``, at most once per window: a throttle of a call that started
  before the last cut is the same congestion signal and is ignored. It stays within
  ``[1, max_limit]`` (``MODEL_MAX_CONCURRENCY``).
- **Rate budgets.** When requests-per-minute and/or tokens-per-minute are configured for a model,
  each call first waits for a token bucket (refilled at the budget's rate, holding at most one
  second's worth): a request takes one request token before it starts, and its tokens (input and
  output, known once it answers) are taken after it, which may leave the bucket in debt that later
  calls wait out. A budget is per worker process: give each worker its share of the account quota.
- **Throttled calls are retried** with exponential backoff and full jitter, up to
  ``max_attempts``, then ``ProviderUnavailable`` stops the batch (the job is retried as a whole).

Time comes from injected ``clock`` and ``sleep``, so tests drive it with a fake clock.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from functions.common.catalogue import ModelPrice
from functions.common.retry import RetryPolicy
from functions.worker.providers import Completion, ModelProvider, ModelThrottled, ProviderUnavailable

DEFAULT_MAX_CONCURRENCY = 16
THROTTLE_ATTEMPTS = 8
THROTTLE_BASE_DELAY = 0.25
THROTTLE_MAX_DELAY = 20.0


@dataclass(frozen=True)
class RateBudget:
    """A model's requests-per-minute and tokens-per-minute budget (None: not limited)."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


@dataclass(frozen=True)
class AimdPolicy:
    max_limit: int = DEFAULT_MAX_CONCURRENCY
    initial: int = 1
    increase: float = 1.0
    decrease: float = 0.7


class TokenBucket:
    """Refills at ``per_minute / 60`` a second up to one second's worth (at least 1)."""

    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        self.rate = per_minute / 60
        self.capacity = max(1.0, self.rate)
        self._clock = clock
        self._level = self.capacity
        self._updated = clock()

    def level(self) -> float:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._updated) * self.rate)
        self._updated = now
        return self._level

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` is available (0: now)."""
        missing = amount - self.level()
        # A hair short (float rounding) counts as there: a sleep that short may not move the clock.
        return missing / self.rate if missing > 1e-9 else 0.0

    def take(self, amount: float) -> None:
        self.level()
        self._level -= amount


class AimdWindow:
    """One model's concurrency window (see the module docstring)."""

    def __init__(self, policy: AimdPolicy, clock: Callable[[], float]) -> None:
        self._policy = policy
        self._clock = clock
        self.limit = float(max(1, min(policy.initial, policy.max_limit)))
        self._threshold = float(policy.max_limit)  # slow start until the first throttle
        self._last_cut = -math.inf
        self.cuts = 0

    @property
    def window(self) -> int:
        return max(1, int(self.limit))

    def on_success(self) -> None:
        step = 1.0 if self.limit < self._threshold else self._policy.increase / self.limit
        self.limit = min(float(self._policy.max_limit), self.limit + step)

    def on_throttle(self, started_at: float) -> bool:
        """Cut the window unless this call belongs to a window that was already cut."""
        if started_at < self._last_cut:
            return False
        self.limit = max(1.0, self.limit * self._policy.decrease)
        self._threshold = self.limit
        self._last_cut = self._clock()
        self.cuts += 1
        return True


class ModelLimiter:
    """A model's window and rate budget, shared by every thread of the worker."""

    def __init__(
        self,
        policy: AimdPolicy,
        budget: RateBudget,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self.aimd = AimdWindow(policy, clock)
        self._requests = (
            TokenBucket(budget.requests_per_minute, clock) if budget.requests_per_minute else None
        )
        self._tokens = TokenBucket(budget.tokens_per_minute, clock) if budget.tokens_per_minute else None

    @property
    def window(self) -> int:
        return self.aimd.window

    def start(self) -> float:
        """Wait for the rate budget, take one request; answer the call's start time."""
        if self._requests is None and self._tokens is None:
            return self._clock()  # no rate budget: nothing to wait for or take (no lock either)
        while True:
            with self._lock:
                wait = max(
                    self._requests.wait_for(1) if self._requests else 0.0,
                    self._tokens.wait_for(1) if self._tokens else 0.0,
                )
                if wait <= 0:
                    if self._requests:
                        self._requests.take(1)
                    return self._clock()
            self._sleep(wait)

    def succeeded(self, tokens: int) -> None:
        with self._lock:
            if self._tokens:
                self._tokens.take(tokens)
            self.aimd.on_success()

    def throttled(self, started_at: float) -> None:
        with self._lock:
            self.aimd.on_throttle(started_at)


class ConcurrencyController:
    """Per-model limiters for one worker process, and model calls made through them."""

    def __init__(
        self,
        provider: ModelProvider,
        *,
        policy: AimdPolicy | None = None,
        budgets: Mapping[str, RateBudget] | None = None,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        """``retry`` (throttled calls) defaults to 8 attempts from 0.25 s, with ``sleep``/``jitter``."""
        self._provider = provider
        self.policy = policy or AimdPolicy()
        self._budgets = dict(budgets or {})
        self._retry = retry or RetryPolicy(
            attempts=THROTTLE_ATTEMPTS,
            base_delay=THROTTLE_BASE_DELAY,
            max_delay=THROTTLE_MAX_DELAY,
            sleep=sleep,
            jitter=jitter,
        )
        self._clock = clock
        self._sleep = sleep
        self._limiters: dict[str, ModelLimiter] = {}
        self._lock = threading.Lock()
        self.throttles = 0

    def limiter(self, model_id: str) -> ModelLimiter:
        limiter = self._limiters.get(model_id)  # limiters are only ever added: read without the lock
        if limiter is not None:
            return limiter
        with self._lock:
            limiter = self._limiters.get(model_id)
            if limiter is None:
                budget = self._budgets.get(model_id, RateBudget())
                limiter = ModelLimiter(self.policy, budget, self._clock, self._sleep)
                self._limiters[model_id] = limiter
            return limiter

    def window(self, model_ids: Iterable[str]) -> int:
        """How many records may be in flight for a template using these models."""
        return min((self.limiter(m).window for m in model_ids), default=self.policy.max_limit)

    def complete(self, model: ModelPrice, prompt: str, seed_record: Mapping[str, Any]) -> Completion:
        """One model call through its limiter: rate budget, AIMD feedback, throttle retries."""
        limiter = self.limiter(model.model_id)
        for attempt in range(self._retry.attempts):
            started = limiter.start()
            try:
                completion = self._provider.complete(model, prompt, seed_record)
            except ModelThrottled as error:
                limiter.throttled(started)
                with self._lock:
                    self.throttles += 1
                if attempt + 1 == self._retry.attempts:
                    raise ProviderUnavailable(
                        f"{model.model_id}: {error.code} after {self._retry.attempts} attempts"
                    ) from error
                self._retry.pause(attempt)
                continue
            limiter.succeeded(completion.tokens_in + completion.tokens_out)
            return completion
        raise AssertionError("unreachable")  # pragma: no cover
