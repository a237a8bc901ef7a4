"""The model catalogue: aliases, Bedrock ids and tiers resolve to one priced model; unknown names
are refused with the known ones."""

from __future__ import annotations

from decimal import Decimal

import pytest

from functions.common.catalogue import (
    CLAUDE_3_5_SONNET,
    LLAMA_3_1_8B,
    LLAMA_3_1_70B,
    MISTRAL_7B,
    UnknownModelError,
    resolve_model,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("model", "tier", "expected"),
    [
        (None, None, LLAMA_3_1_8B),
        (None, "tier-1", LLAMA_3_1_8B),
        (None, "cheap", LLAMA_3_1_8B),
        (None, "tier-2", LLAMA_3_1_70B),
        (None, "balanced", LLAMA_3_1_70B),
        ("tier-3", None, CLAUDE_3_5_SONNET),
        ("premium", "cheap", CLAUDE_3_5_SONNET),  # an explicit model wins over the tier
        (MISTRAL_7B, None, MISTRAL_7B),
        ("llama-3.1-8b", None, LLAMA_3_1_8B),  # the spec's example
        ("llama-3.1-70b", None, LLAMA_3_1_70B),
        ("claude-3.5-sonnet", "tier-1", CLAUDE_3_5_SONNET),
        ("mistral-7b", None, MISTRAL_7B),
    ],
)
def test_steps_resolve_to_a_priced_bedrock_model(model, tier, expected):
    assert resolve_model(model, tier).model_id == expected


def test_an_unknown_model_is_refused_with_the_known_ones():
    with pytest.raises(UnknownModelError, match=r"unknown model 'gpt-9'.*llama-3\.1-8b.*tier-1") as caught:
        resolve_model("gpt-9", None)
    assert caught.value.field == "model"


def test_a_model_id_is_not_a_tier():
    with pytest.raises(
        UnknownModelError, match=r"unknown model_tier 'llama-3.1-8b'; known: tier-1"
    ) as caught:
        resolve_model(None, "llama-3.1-8b")
    assert caught.value.field == "model_tier"


def test_an_unknown_tier_is_refused_even_next_to_a_known_model():
    with pytest.raises(UnknownModelError, match="model_tier 'tier-9'"):
        resolve_model("mistral-7b", "tier-9")


def test_token_prices_are_per_million():
    sonnet = resolve_model("premium", None)
    assert sonnet.cost(1_000_000, 0) == Decimal("3.00")
    assert sonnet.cost(0, 1_000_000) == Decimal("15.00")
    assert sonnet.cost(2000, 500) == Decimal("0.0135")
