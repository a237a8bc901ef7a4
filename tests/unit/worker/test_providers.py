"""Model providers: Bedrock Converse through botocore's Stubber (real response shapes), offline."""

from __future__ import annotations

from decimal import Decimal

import boto3
import pytest
from botocore.stub import Stubber

from functions.common.catalogue import CLAUDE_3_5_SONNET, LLAMA_3_1_8B, MISTRAL_7B, MODELS
from functions.common.retry import RetryPolicy
from functions.worker.providers import (
    BedrockProvider,
    ModelCallError,
    ModelThrottled,
    OfflineBehaviour,
    OfflineProvider,
    ProviderUnavailable,
    estimate_tokens,
)

pytestmark = pytest.mark.unit

SONNET = MODELS[CLAUDE_3_5_SONNET]


def converse_answer(text: str, tokens_in: int, tokens_out: int) -> dict:
    """A Converse response as Bedrock returns it."""
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {
            "inputTokens": tokens_in,
            "outputTokens": tokens_out,
            "totalTokens": tokens_in + tokens_out,
        },
        "metrics": {"latencyMs": 812},
    }


def expected_request(prompt: str, model_id: str = CLAUDE_3_5_SONNET) -> dict:
    return {
        "modelId": model_id,
        "messages": [{"role": "user", "content": [{"text": prompt}]}],
        "inferenceConfig": {"maxTokens": 256},
    }


@pytest.fixture
def bedrock():
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_converse_text_and_token_usage_come_from_the_response(bedrock):
    client, stubber = bedrock
    stubber.add_response("converse", converse_answer("A poem.", 21, 7), expected_request("Write a poem"))

    completion = BedrockProvider(client, max_tokens=256).complete(SONNET, "Write a poem", {"x": 1})

    assert (completion.text, completion.tokens_in, completion.tokens_out) == ("A poem.", 21, 7)


@pytest.mark.parametrize("code", ["ThrottlingException", "ServiceUnavailableException"])
def test_throttling_is_raised_at_once_for_the_concurrency_controller(bedrock, code):
    client, stubber = bedrock
    stubber.add_client_error("converse", code, "Too many requests", 429)
    waits: list[float] = []
    provider = BedrockProvider(client, max_tokens=256, retry=RetryPolicy(sleep=waits.append))

    with pytest.raises(ModelThrottled) as raised:
        provider.complete(SONNET, "p", {})

    assert raised.value.code == code
    assert isinstance(raised.value, ProviderUnavailable)  # past every retry it stops the batch
    assert waits == []


def test_a_model_not_ready_is_retried_with_exponential_backoff(bedrock):
    client, stubber = bedrock
    for code in ("ModelNotReadyException", "InternalServerException", "ModelNotReadyException"):
        stubber.add_client_error("converse", code, "warming up", 500)
    stubber.add_response("converse", converse_answer("ok", 3, 1), expected_request("p"))
    waits: list[float] = []
    retry = RetryPolicy(attempts=6, base_delay=0.5, sleep=waits.append, jitter=lambda low, high: high)
    provider = BedrockProvider(client, max_tokens=256, retry=retry)

    completion = provider.complete(SONNET, "p", {})

    assert completion.text == "ok"
    assert waits == [0.5, 1.0, 2.0]


def test_an_internal_error_past_every_attempt_makes_the_provider_unavailable(bedrock):
    client, stubber = bedrock
    for _ in range(4):
        stubber.add_client_error("converse", "InternalServerException", "oops", 500)
    waits: list[float] = []
    provider = BedrockProvider(client, max_tokens=256, retry=RetryPolicy(attempts=4, sleep=waits.append))

    with pytest.raises(ProviderUnavailable, match="InternalServerException after 4 attempts"):
        provider.complete(SONNET, "p", {})
    assert len(waits) == 3


def test_a_refused_prompt_fails_the_record_not_the_job(bedrock):
    client, stubber = bedrock
    stubber.add_client_error("converse", "ValidationException", "Input is too long", 400)

    with pytest.raises(ModelCallError, match="Input is too long"):
        BedrockProvider(client, max_tokens=256, retry=RetryPolicy(sleep=lambda s: None)).complete(
            SONNET, "p", {}
        )


def test_access_denied_is_not_retried(bedrock):
    client, stubber = bedrock
    stubber.add_client_error("converse", "AccessDeniedException", "model not enabled", 403)
    waits: list[float] = []

    with pytest.raises(ProviderUnavailable, match="AccessDeniedException"):
        BedrockProvider(client, max_tokens=256, retry=RetryPolicy(sleep=waits.append)).complete(
            SONNET, "p", {}
        )
    assert waits == []


def test_offline_text_is_deterministic_per_prompt_seed_and_model():
    offline = OfflineProvider()
    llama, mistral = MODELS[LLAMA_3_1_8B], MODELS[MISTRAL_7B]

    first = offline.complete(llama, "Write about Ada", {"name": "Ada"})

    assert offline.complete(llama, "Write about Ada", {"name": "Ada"}) == first
    assert offline.complete(llama, "Write about Ada", {"name": "Eve"}).text != first.text
    assert offline.complete(llama, "Write about Eve", {"name": "Ada"}).text != first.text
    assert offline.complete(mistral, "Write about Ada", {"name": "Ada"}).text != first.text
    assert first.tokens_in == estimate_tokens("Write about Ada") == 4
    assert first.tokens_out == estimate_tokens(first.text)
    # Billed like the model it stands in for.
    assert llama.cost(first.tokens_in, first.tokens_out) == (
        Decimal(first.tokens_in + first.tokens_out) * Decimal("0.22") / 1_000_000
    )


def test_offline_text_is_the_same_as_before_its_word_draw_was_made_cheaper():
    """The words are drawn with ``getrandbits`` instead of ``random.choice``: the same text, so
    outputs (and token counts, so costs) of jobs run before and after are the same."""
    llama = OfflineProvider.text(MODELS[LLAMA_3_1_8B], "Write about Ada", {"name": "Ada"})
    mistral = OfflineProvider.text(MODELS[MISTRAL_7B], "Write about Ada", {"name": "Ada"})

    assert llama.text == (
        "[offline Llama 3.1 8B Instruct 89f988e9] canyon marble canyon meadow beacon ribbon harbor"
        " sparrow quiet orchard beacon tide drift thistle compass compass cedar drift harvest signal"
        " orchard canyon drift river quiet marble tide signal quiet."
    )
    assert (llama.tokens_out, mistral.tokens_out) == (60, 74)
    assert mistral.text.startswith("[offline Mistral 7B Instruct 4097caad] compass willow signal harbor")


@pytest.mark.parametrize("seed", range(50))
def test_the_offline_word_draw_matches_random_choice(seed):
    import random

    from functions.worker.providers import _WORDS, _words

    expected = random.Random(seed)
    assert _words(random.Random(seed), 60) == [expected.choice(_WORDS) for _ in range(60)]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_offline_latency_is_fixed_plus_jitter_and_the_text_does_not_change():
    clock = FakeClock()
    slow = OfflineProvider(
        OfflineBehaviour(latency_ms=200, jitter_ms=50),
        clock=clock,
        sleep=clock.sleep,
        jitter=lambda low, high: high * 0.5,
    )
    llama = MODELS[LLAMA_3_1_8B]

    completion = slow.complete(llama, "Write about Ada", {"name": "Ada"})

    assert clock.slept == [pytest.approx(0.225)]
    assert completion == OfflineProvider().complete(llama, "Write about Ada", {"name": "Ada"})


def test_offline_quota_throttles_beyond_its_requests_per_minute_and_refills_with_time():
    clock = FakeClock()
    quota = OfflineProvider(OfflineBehaviour(rpm=120), clock=clock, sleep=clock.sleep)  # 2 a second
    llama = MODELS[LLAMA_3_1_8B]

    quota.complete(llama, "a", {})
    quota.complete(llama, "b", {})  # one second's worth: a burst of 2
    with pytest.raises(ModelThrottled) as raised:
        quota.complete(llama, "c", {})
    assert raised.value.code == "ThrottlingException"
    clock.now += 0.5  # one request's worth refilled
    quota.complete(llama, "c", {})
    with pytest.raises(ModelThrottled):
        quota.complete(llama, "d", {})
    clock.now += 60  # never more than one second's worth saved up
    quota.complete(llama, "e", {})
    quota.complete(llama, "f", {})
    with pytest.raises(ModelThrottled):
        quota.complete(llama, "g", {})
    assert (quota.calls, quota.throttled) == (8, 3)
