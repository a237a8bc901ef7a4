"""The adaptive concurrency controller with a fake clock: AIMD window, rate budgets, throttle retries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from functions.common.catalogue import CLAUDE_3_5_SONNET, LLAMA_3_1_8B, MODELS, ModelPrice
from functions.common.retry import RetryPolicy
from functions.worker.concurrency import AimdPolicy, AimdWindow, ConcurrencyController, RateBudget
from functions.worker.providers import Completion, ModelThrottled, ProviderUnavailable

pytestmark = pytest.mark.unit

LLAMA = MODELS[LLAMA_3_1_8B]
SONNET = MODELS[CLAUDE_3_5_SONNET]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class ScriptedProvider:
    """Answers with ``tokens`` tokens, or throttles the calls whose number is in ``throttle``."""

    def __init__(self, clock: FakeClock, throttle: set[int] | None = None, tokens: int = 10) -> None:
        self.clock = clock
        self.throttle = throttle or set()
        self.tokens = tokens
        self.calls: list[float] = []

    def complete(self, model: ModelPrice, prompt: str, seed_record: Mapping[str, Any]) -> Completion:
        self.calls.append(self.clock.now)
        if len(self.calls) in self.throttle:
            raise ModelThrottled("ThrottlingException", "slow down")
        return Completion(text="ok", tokens_in=self.tokens // 2, tokens_out=self.tokens - self.tokens // 2)


def test_slow_start_grows_the_window_by_one_per_success_up_to_the_maximum():
    clock = FakeClock()
    window = AimdWindow(AimdPolicy(max_limit=8), clock)

    seen = [window.window]
    for _ in range(10):
        window.on_success()
        seen.append(window.window)

    assert seen == [1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 8]


def test_a_throttle_cuts_the_window_then_it_grows_by_about_one_per_window_of_successes():
    clock = FakeClock()
    window = AimdWindow(AimdPolicy(max_limit=16, decrease=0.5), clock)
    for _ in range(9):
        window.on_success()
    assert window.window == 10

    assert window.on_throttle(started_at=clock()) is True
    assert window.window == 5
    # Congestion avoidance: 5 successes (one window) add about one.
    for _ in range(5):
        window.on_success()
    assert window.window == 5
    assert window.limit == pytest.approx(5.9, abs=0.05)
    for _ in range(6):
        window.on_success()
    assert window.window == 6


def test_throttles_of_calls_started_before_the_last_cut_do_not_cut_again():
    clock = FakeClock()
    window = AimdWindow(AimdPolicy(max_limit=16, decrease=0.5), clock)
    for _ in range(15):
        window.on_success()
    started_together = clock()
    clock.now += 0.2

    assert window.on_throttle(started_together) is True
    clock.now += 0.1
    # The other calls of the same window come back throttled too: one cut for all of them.
    assert window.on_throttle(started_together) is False
    assert window.on_throttle(started_together) is False
    assert window.window == 8
    # A call started after the cut is news: cut again.
    assert window.on_throttle(clock()) is True
    assert window.window == 4
    assert window.cuts == 2


def test_the_window_never_drops_below_one():
    clock = FakeClock()
    window = AimdWindow(AimdPolicy(max_limit=4, decrease=0.5), clock)
    for _ in range(10):
        clock.now += 1
        window.on_throttle(clock())
    assert window.window == 1
    assert window.limit == 1.0


def test_a_throttled_call_is_retried_with_backoff_and_shrinks_the_window():
    clock = FakeClock()
    provider = ScriptedProvider(clock, throttle={9, 10})
    controller = ConcurrencyController(
        provider,
        policy=AimdPolicy(max_limit=16, decrease=0.5),
        clock=clock,
        sleep=clock.sleep,
        jitter=lambda low, high: high,
    )
    for _ in range(8):
        controller.complete(LLAMA, "p", {})
    assert controller.window([LLAMA_3_1_8B]) == 9

    completion = controller.complete(LLAMA, "p", {})  # calls 9 and 10 throttled, 11 answers

    assert completion.text == "ok"
    assert clock.slept == [0.25, 0.5]
    assert controller.throttles == 2
    # Two cuts (the second call started after the first cut), then one success.
    assert controller.window([LLAMA_3_1_8B]) == 2


def test_throttled_past_every_attempt_makes_the_provider_unavailable():
    clock = FakeClock()
    provider = ScriptedProvider(clock, throttle=set(range(1, 10)))
    controller = ConcurrencyController(
        provider, retry=RetryPolicy(attempts=3, sleep=clock.sleep), clock=clock, sleep=clock.sleep
    )

    with pytest.raises(ProviderUnavailable, match="ThrottlingException after 3 attempts"):
        controller.complete(LLAMA, "p", {})
    assert len(provider.calls) == 3
    assert len(clock.slept) == 2


def test_the_window_of_a_template_is_its_tightest_model():
    clock = FakeClock()
    controller = ConcurrencyController(
        ScriptedProvider(clock), policy=AimdPolicy(max_limit=16), clock=clock, sleep=clock.sleep
    )
    for _ in range(5):
        controller.complete(LLAMA, "p", {})
    controller.complete(SONNET, "p", {})

    assert controller.window([LLAMA_3_1_8B]) == 6
    assert controller.window([CLAUDE_3_5_SONNET]) == 2
    assert controller.window([LLAMA_3_1_8B, CLAUDE_3_5_SONNET]) == 2


def test_a_requests_per_minute_budget_spaces_calls_at_its_rate_after_a_one_second_burst():
    clock = FakeClock()
    provider = ScriptedProvider(clock)
    controller = ConcurrencyController(
        provider,
        budgets={LLAMA_3_1_8B: RateBudget(requests_per_minute=120)},  # 2 a second
        clock=clock,
        sleep=clock.sleep,
    )

    for _ in range(6):
        controller.complete(LLAMA, "p", {})

    gaps = [round(b - a, 6) for a, b in zip(provider.calls, provider.calls[1:], strict=False)]
    assert gaps == [0, 0.5, 0.5, 0.5, 0.5]
    # Another model has no budget: it never waits.
    controller.complete(SONNET, "p", {})
    assert provider.calls[-1] == provider.calls[-2]


def test_a_tokens_per_minute_budget_makes_later_calls_wait_out_the_tokens_used():
    clock = FakeClock()
    provider = ScriptedProvider(clock, tokens=60)
    controller = ConcurrencyController(
        provider,
        budgets={LLAMA_3_1_8B: RateBudget(tokens_per_minute=1800)},  # 30 tokens a second
        clock=clock,
        sleep=clock.sleep,
    )

    for _ in range(3):
        controller.complete(LLAMA, "p", {})

    # 30 tokens saved up: the first call runs, leaving -30; the next waits until +1 (31/30 s).
    gaps = [round(b - a, 3) for a, b in zip(provider.calls, provider.calls[1:], strict=False)]
    assert gaps == [pytest.approx(31 / 30, abs=0.001), pytest.approx(60 / 30, abs=0.001)]
