"""The one table of models and prices the worker bills with, and the Fargate Spot and S3 rates.

Model prices are the on-demand per-million-token prices published on the Amazon Bedrock pricing
page (us-east-1). The offline provider bills its stand-in text at the same prices, so budgets and
the dashboard behave locally as they do in AWS. Fargate Spot prices change over time; the table
holds the us-east-1 rates the worker bills with and the worker's settings can override them.
Money is ``Decimal`` throughout.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

MILLION = Decimal(1_000_000)
SECONDS_PER_HOUR = Decimal(3600)


@dataclass(frozen=True)
class ModelPrice:
    model_id: str
    name: str
    input_per_million: Decimal
    output_per_million: Decimal

    def cost(self, tokens_in: int, tokens_out: int) -> Decimal:
        return (
            Decimal(tokens_in) * self.input_per_million + Decimal(tokens_out) * self.output_per_million
        ) / MILLION


LLAMA_3_1_8B = "meta.llama3-1-8b-instruct-v1:0"
LLAMA_3_1_70B = "meta.llama3-1-70b-instruct-v1:0"
CLAUDE_3_5_SONNET = "anthropic.claude-3-5-sonnet-20240620-v1:0"
MISTRAL_7B = "mistral.mistral-7b-instruct-v0:2"

MODELS: dict[str, ModelPrice] = {
    price.model_id: price
    for price in (
        ModelPrice(LLAMA_3_1_8B, "Llama 3.1 8B Instruct", Decimal("0.22"), Decimal("0.22")),
        ModelPrice(LLAMA_3_1_70B, "Llama 3.1 70B Instruct", Decimal("0.72"), Decimal("0.72")),
        ModelPrice(CLAUDE_3_5_SONNET, "Claude 3.5 Sonnet", Decimal("3.00"), Decimal("15.00")),
        ModelPrice(MISTRAL_7B, "Mistral 7B Instruct", Decimal("0.15"), Decimal("0.20")),
    )
}

TIERS: dict[str, str] = {
    "tier-1": LLAMA_3_1_8B,
    "cheap": LLAMA_3_1_8B,
    "tier-2": LLAMA_3_1_70B,
    "balanced": LLAMA_3_1_70B,
    "tier-3": CLAUDE_3_5_SONNET,
    "premium": CLAUDE_3_5_SONNET,
}

DEFAULT_TIER = "tier-1"


class UnknownModelError(ValueError):
    """A template step names a model or tier the price table does not know."""


def resolve_model(model: str | None, model_tier: str | None) -> ModelPrice:
    """The priced model of a template step: its ``model`` (an id or a tier name), else its
    ``model_tier``, else the cheapest tier."""
    name = model or model_tier or DEFAULT_TIER
    model_id = TIERS.get(name, name)
    price = MODELS.get(model_id)
    if price is None:
        known = sorted([*MODELS, *TIERS])
        raise UnknownModelError(f"unknown model {name!r}; known models and tiers: {', '.join(known)}")
    return price


# Fargate Spot, Linux/x86, us-east-1, per hour.
FARGATE_SPOT_VCPU_HOUR = Decimal("0.01334053")
FARGATE_SPOT_GB_HOUR = Decimal("0.00146489")


@dataclass(frozen=True)
class FargatePrice:
    vcpu: Decimal
    memory_gb: Decimal
    vcpu_hour: Decimal = FARGATE_SPOT_VCPU_HOUR
    gb_hour: Decimal = FARGATE_SPOT_GB_HOUR

    @classmethod
    def for_task(cls, cpu_units: int, memory_mib: int) -> FargatePrice:
        """The price of a task definition's size (``cpu`` in CPU units, 1024 = 1 vCPU)."""
        return cls(vcpu=Decimal(cpu_units) / 1024, memory_gb=Decimal(memory_mib) / 1024)

    def at_size(self, cpu_units: int, memory_mib: int) -> FargatePrice:
        """The same rates for another task size."""
        return FargatePrice(
            vcpu=Decimal(cpu_units) / 1024,
            memory_gb=Decimal(memory_mib) / 1024,
            vcpu_hour=self.vcpu_hour,
            gb_hour=self.gb_hour,
        )

    def cost(self, seconds: Decimal) -> Decimal:
        return seconds * (self.vcpu * self.vcpu_hour + self.memory_gb * self.gb_hour) / SECONDS_PER_HOUR


# S3 Standard requests, us-east-1.
S3_PUT_PER_THOUSAND = Decimal("0.005")
S3_GET_PER_THOUSAND = Decimal("0.0004")


def s3_cost(puts: int, gets: int) -> Decimal:
    return (Decimal(puts) * S3_PUT_PER_THOUSAND + Decimal(gets) * S3_GET_PER_THOUSAND) / 1000
