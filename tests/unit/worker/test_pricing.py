"""The price table: tiers, per-million-token prices, Fargate Spot and S3 requests, in Decimal."""

from __future__ import annotations

from decimal import Decimal

import pytest

from functions.worker.pricing import (
    CLAUDE_3_5_SONNET,
    LLAMA_3_1_8B,
    LLAMA_3_1_70B,
    MISTRAL_7B,
    FargatePrice,
    UnknownModelError,
    resolve_model,
    s3_cost,
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
    ],
)
def test_steps_resolve_to_a_priced_model(model, tier, expected):
    assert resolve_model(model, tier).model_id == expected


def test_an_unknown_model_is_refused_with_the_known_ones():
    with pytest.raises(UnknownModelError, match=r"gpt-9.*tier-1"):
        resolve_model("gpt-9", None)


def test_token_prices_are_per_million():
    sonnet = resolve_model("premium", None)
    assert sonnet.cost(1_000_000, 0) == Decimal("3.00")
    assert sonnet.cost(0, 1_000_000) == Decimal("15.00")
    assert sonnet.cost(2000, 500) == Decimal("0.0135")


def test_fargate_cost_follows_the_task_size():
    one_vcpu_two_gb = FargatePrice.for_task(1024, 2048)
    quarter = FargatePrice.for_task(256, 512)
    hour = Decimal(3600)
    assert one_vcpu_two_gb.cost(hour) == one_vcpu_two_gb.vcpu_hour + 2 * one_vcpu_two_gb.gb_hour
    assert quarter.cost(hour) * 4 == one_vcpu_two_gb.cost(hour)
    assert one_vcpu_two_gb.cost(Decimal(0)) == 0


def test_s3_requests_are_priced_per_thousand():
    assert s3_cost(puts=1000, gets=0) == Decimal("0.005")
    assert s3_cost(puts=0, gets=1000) == Decimal("0.0004")
