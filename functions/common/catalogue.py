"""The model catalogue: every model a template step may name, its Bedrock id and its price.

One table for the API and the worker: ``POST/PUT /templates`` refuse a step whose ``model`` or
``model_tier`` is not here (so the worker never meets an unresolvable model in a template the API
accepted), ``GET /models`` lists it, and the worker bills with it.

A step names its model by

- ``model``: a friendly alias (``llama-3.1-8b``, the spec's form), a Bedrock model id
  (``meta.llama3-1-8b-instruct-v1:0``) or a tier name;
- ``model_tier``: a tier (``tier-1``/``cheap``, ``tier-2``/``balanced``, ``tier-3``/``premium``);
- neither: the default tier (``tier-1``).

An explicit ``model`` wins over ``model_tier``. The stored template keeps what the user wrote; the
worker resolves it to the Bedrock id it invokes and bills.

Prices are the on-demand per-million-token prices published on the Amazon Bedrock pricing page
(us-east-1). The offline provider bills its stand-in text at the same prices, so budgets and the
dashboard behave locally as they do in AWS. Money is ``Decimal`` throughout.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class ModelPrice:
    model_id: str
    """The Bedrock model id: what the worker invokes and bills."""
    name: str
    alias: str
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
        ModelPrice(LLAMA_3_1_8B, "Llama 3.1 8B Instruct", "llama-3.1-8b", Decimal("0.22"), Decimal("0.22")),
        ModelPrice(
            LLAMA_3_1_70B, "Llama 3.1 70B Instruct", "llama-3.1-70b", Decimal("0.72"), Decimal("0.72")
        ),
        ModelPrice(
            CLAUDE_3_5_SONNET, "Claude 3.5 Sonnet", "claude-3.5-sonnet", Decimal("3.00"), Decimal("15.00")
        ),
        ModelPrice(MISTRAL_7B, "Mistral 7B Instruct", "mistral-7b", Decimal("0.15"), Decimal("0.20")),
    )
}

ALIASES: dict[str, str] = {price.alias: price.model_id for price in MODELS.values()}

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
    """A template step names a model or tier the catalogue does not know. ``field`` is the step
    field at fault (``model`` or ``model_tier``)."""

    def __init__(self, field: str, name: str, known: list[str]) -> None:
        super().__init__(f"unknown {field} {name!r}; known: {', '.join(known)}")
        self.field = field
        self.name = name
        self.known = known


def known_models() -> list[str]:
    """What ``model`` accepts: aliases, then Bedrock ids, then tiers."""
    return [*ALIASES, *MODELS, *TIERS]


def known_tiers() -> list[str]:
    return list(TIERS)


def resolve_model(model: str | None, model_tier: str | None) -> ModelPrice:
    """The priced model of a template step (see the module docstring). Both names are checked,
    even when ``model`` wins, so a typo in either is refused."""
    tier_model = None
    if model_tier is not None:
        tier_model = TIERS.get(model_tier)
        if tier_model is None:
            raise UnknownModelError("model_tier", model_tier, known_tiers())
    if model is None:
        return MODELS[tier_model or TIERS[DEFAULT_TIER]]
    model_id = ALIASES.get(model) or TIERS.get(model) or model
    price = MODELS.get(model_id)
    if price is None:
        raise UnknownModelError("model", model, known_models())
    return price


def tiers_of(model_id: str) -> list[str]:
    return [tier for tier, target in TIERS.items() if target == model_id]
