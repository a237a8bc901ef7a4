"""One interface to the models: Amazon Bedrock's Converse API, or an offline stand-in.

``MODEL_PROVIDER=bedrock`` (AWS) calls Bedrock; ``MODEL_PROVIDER=offline`` (the local runtime and
tests) answers with deterministic text derived from the prompt and the seed record, counts tokens
from the text and is billed at the prices of the model it stands in for, so budgets and the
dashboard behave as in AWS.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import ClientError

from functions.common.dynamo import error_code
from functions.common.retry import RetryPolicy
from functions.worker.pricing import ModelPrice

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


class OfflineProvider:
    """Deterministic, free-running stand-in for a model: same prompt and seed, same text."""

    def complete(self, model: ModelPrice, prompt: str, seed_record: Mapping[str, Any]) -> Completion:
        seed_json = json.dumps(seed_record, sort_keys=True, default=str)
        digest = hashlib.sha256(f"{model.model_id}\n{prompt}\n{seed_json}".encode()).digest()
        generator = random.Random(digest)  # noqa: S311 - text generation, not security
        words = [generator.choice(_WORDS) for _ in range(12 + digest[0] % 40)]
        text = f"[offline {model.name} {digest.hex()[:8]}] " + " ".join(words) + "."
        return Completion(text=text, tokens_in=estimate_tokens(prompt), tokens_out=estimate_tokens(text))


# Converse errors worth waiting out; everything else is decided at once.
RETRYABLE = frozenset(
    {
        "ThrottlingException",
        "ServiceUnavailableException",
        "ModelNotReadyException",
        "InternalServerException",
    }
)
# The prompt itself is the problem: fail the record.
RECORD_ERRORS = frozenset({"ValidationException", "ModelErrorException"})


# Bedrock throttles per account and model: back off up to 20 s, six attempts in all.
THROTTLING_RETRY = RetryPolicy(attempts=6, base_delay=0.5, max_delay=20.0)


class _Throttled(Exception):
    """A retryable Bedrock answer (its code is the message)."""


class BedrockProvider:
    """Converse through boto3 ``bedrock-runtime``, with exponential backoff and full jitter on
    throttling; token usage comes from the response's ``usage``."""

    def __init__(
        self,
        client: Any,
        *,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        retry: RetryPolicy = THROTTLING_RETRY,
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
            return self._retry.call(lambda: self._converse(model, request), retry_on=_Throttled)
        except _Throttled as throttled:
            raise ProviderUnavailable(
                f"{model.model_id}: {throttled} after {self._retry.attempts} attempts"
            ) from throttled.__cause__

    def _converse(self, model: ModelPrice, request: dict[str, Any]) -> Completion:
        try:
            return _completion(self._client.converse(**request))
        except ClientError as error:
            code = error_code(error)
            message = error.response.get("Error", {}).get("Message", "")
            if code in RECORD_ERRORS:
                raise ModelCallError(f"{model.model_id} refused the prompt: {code}: {message}") from error
            if code in RETRYABLE:
                raise _Throttled(code) from error
            raise ProviderUnavailable(f"{model.model_id}: {code}: {message}") from error


def _completion(answer: Mapping[str, Any]) -> Completion:
    content = answer.get("output", {}).get("message", {}).get("content", [])
    text = "".join(block["text"] for block in content if "text" in block)
    usage = answer.get("usage", {})
    return Completion(text=text, tokens_in=int(usage["inputTokens"]), tokens_out=int(usage["outputTokens"]))
