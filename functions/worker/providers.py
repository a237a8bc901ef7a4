"""One interface to the models: Amazon Bedrock's Converse API, or an offline stand-in.

``MODEL_PROVIDER=bedrock`` (AWS) calls Bedrock; ``MODEL_PROVIDER=offline`` (the local runtime and
tests) answers with deterministic text derived from the prompt and the seed record, counts tokens
from the text and is billed at the prices of the model it stands in for, so budgets and the
dashboard behave as in AWS. The offline provider can also behave like a model *service*: a latency
per call (fixed + uniform jitter) and a requests-per-minute quota beyond which it answers
``ThrottlingException``, so adaptive concurrency can be exercised without AWS.

Throttling (``ThrottlingException``, ``ServiceUnavailableException``) is raised at once as
``ModelThrottled``: the caller (functions/worker/concurrency.py) backs off, retries and shrinks its
concurrency window, which it could not do if the provider waited it out silently.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import ClientError

from functions.common.catalogue import ModelPrice
from functions.common.dynamo import error_code
from functions.common.retry import RetryPolicy

DEFAULT_MAX_TOKENS = 1024
CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text


@dataclass(frozen=True)
class Completion:
    text: str
    tokens_in: int
    tokens_out: int


class ModelCallError(Exception):
    """The model refused this one prompt (bad request, content filter): fails that record only."""


class ProviderUnavailable(Exception):
    """The model service cannot be used now (throttled past every retry, down, not permitted).

    Fails the batch, not a record: the worker stops and the job is retried or failed as a whole.
    """


class ModelThrottled(ProviderUnavailable):
    """The model service asked us to slow down (``code`` names how). Retry later, with less
    concurrency; past every retry it is a ``ProviderUnavailable``."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code


THROTTLING = "ThrottlingException"
SERVICE_UNAVAILABLE = "ServiceUnavailableException"


class ModelProvider(Protocol):
    def complete(self, model: ModelPrice, prompt: str, seed_record: Mapping[str, Any]) -> Completion: ...


def estimate_tokens(text: str) -> int:
    return max(1, -(-len(text) // CHARS_PER_TOKEN)) if text else 0


_WORDS = [
    "amber",
    "harbor",
    "quiet",
    "lantern",
    "river",
    "orchard",
    "velvet",
    "compass",
    "meadow",
    "signal",
    "ember",
    "willow",
    "canyon",
    "sparrow",
    "granite",
    "harvest",
    "ribbon",
    "tide",
    "marble",
    "thistle",
    "beacon",
    "cedar",
    "drift",
    "hollow",
]


_WORD_BITS = len(_WORDS).bit_length()


def _words(generator: random.Random, count: int) -> list[str]:
    """``[generator.choice(_WORDS) for _ in range(count)]``, the same words (``choice`` draws
    ``getrandbits(bit_length)`` until one is in range) at a third of the cost: the offline model
    runs for every step of every record, and ``choice`` was most of its time."""
    bits = generator.getrandbits
    words = []
    for _ in range(count):
        index = bits(_WORD_BITS)
        while index >= len(_WORDS):
            index = bits(_WORD_BITS)
        words.append(_WORDS[index])
    return words


@dataclass(frozen=True)
class OfflineBehaviour:
    """How the offline model service behaves: each call takes ``latency_ms`` plus a uniform
    ``[0, jitter_ms]``; with ``rpm`` set, calls beyond a token bucket refilled at ``rpm / 60`` a
    second (holding one second's worth, at least 1) are refused with ``ThrottlingException``, as a
    quota would. The quota is per provider, so per worker process."""

    latency_ms: float = 0
    jitter_ms: float = 0
    rpm: int | None = None


class OfflineProvider:
    """Deterministic stand-in for a model: same prompt and seed, same text; optionally slow and
    rate-limited like a model service (``OfflineBehaviour``)."""

    def __init__(
        self,
        behaviour: OfflineBehaviour | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.behaviour = behaviour or OfflineBehaviour()
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._lock = threading.Lock()
        rpm = self.behaviour.rpm
        self._rate = rpm / 60 if rpm else 0.0
        self._capacity = max(1.0, self._rate)
        self._level = self._capacity
        self._updated = clock()
        self.calls = 0
        self.throttled = 0

    def _admit(self) -> None:
        if not self._rate:
            return
        with self._lock:
            now = self._clock()
            self._level = min(self._capacity, self._level + (now - self._updated) * self._rate)
            self._updated = now
            self.calls += 1
            if self._level < 1:
                self.throttled += 1
                raise ModelThrottled(THROTTLING, f"offline quota of {self.behaviour.rpm} requests per minute")
            self._level -= 1

    def complete(self, model: ModelPrice, prompt: str, seed_record: Mapping[str, Any]) -> Completion:
        self._admit()
        behaviour = self.behaviour
        if behaviour.latency_ms or behaviour.jitter_ms:
            self._sleep((behaviour.latency_ms + self._jitter(0, behaviour.jitter_ms)) / 1000)
        return self.text(model, prompt, seed_record)

    @staticmethod
    def text(model: ModelPrice, prompt: str, seed_record: Mapping[str, Any]) -> Completion:
        seed_json = json.dumps(seed_record, sort_keys=True, default=str)
        digest = hashlib.sha256(f"{model.model_id}\n{prompt}\n{seed_json}".encode()).digest()
        generator = random.Random(digest)  # noqa: S311 - text generation, not security
        text = (
            f"[offline {model.name} {digest.hex()[:8]}] "
            + " ".join(_words(generator, 12 + digest[0] % 40))
            + "."
        )
        return Completion(text=text, tokens_in=estimate_tokens(prompt), tokens_out=estimate_tokens(text))


# Converse errors that mean "slow down": raised at once for the concurrency controller.
THROTTLES = frozenset({THROTTLING, SERVICE_UNAVAILABLE})
# Other Converse errors worth waiting out here; everything else is decided at once.
RETRYABLE = frozenset({"ModelNotReadyException", "InternalServerException"})
# The prompt itself is the problem: fail the record.
RECORD_ERRORS = frozenset({"ValidationException", "ModelErrorException"})


# A model not ready or an internal error: back off up to 20 s, six attempts in all. (Throttling
# is the concurrency controller's to wait out: functions/worker/concurrency.py.)
NOT_READY_RETRY = RetryPolicy(attempts=6, base_delay=0.5, max_delay=20.0)


class _NotReady(Exception):
    """A retryable Bedrock answer other than throttling (its code is the message)."""


class BedrockProvider:
    """Converse through boto3 ``bedrock-runtime``; token usage comes from the response's ``usage``.
    Throttling raises ``ModelThrottled`` at once; a model not ready or an internal error is retried
    here with exponential backoff and full jitter."""

    def __init__(
        self,
        client: Any,
        *,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        retry: RetryPolicy = NOT_READY_RETRY,
    ) -> None:
        self._client = client
        self._max_tokens = max_tokens
        self._retry = retry

    def complete(self, model: ModelPrice, prompt: str, seed_record: Mapping[str, Any]) -> Completion:
        request = {
            "modelId": model.model_id,
            "messages": [{"role": "user", "content": [{"text": prompt}]}],
            "inferenceConfig": {"maxTokens": self._max_tokens},
        }
        try:
            return self._retry.call(lambda: self._converse(model, request), retry_on=_NotReady)
        except _NotReady as not_ready:
            raise ProviderUnavailable(
                f"{model.model_id}: {not_ready} after {self._retry.attempts} attempts"
            ) from not_ready.__cause__

    def _converse(self, model: ModelPrice, request: dict[str, Any]) -> Completion:
        try:
            return _completion(self._client.converse(**request))
        except ClientError as error:
            code = error_code(error)
            message = error.response.get("Error", {}).get("Message", "")
            if code in THROTTLES:
                raise ModelThrottled(code, message) from error
            if code in RECORD_ERRORS:
                raise ModelCallError(f"{model.model_id} refused the prompt: {code}: {message}") from error
            if code in RETRYABLE:
                raise _NotReady(code) from error
            raise ProviderUnavailable(f"{model.model_id}: {code}: {message}") from error


def _completion(answer: Mapping[str, Any]) -> Completion:
    content = answer.get("output", {}).get("message", {}).get("content", [])
    text = "".join(block["text"] for block in content if "text" in block)
    usage = answer.get("usage", {})
    return Completion(text=text, tokens_in=int(usage["inputTokens"]), tokens_out=int(usage["outputTokens"]))
