"""Templates: request, response, domain and stored-row models.

``TemplateVersion`` is the domain model other domains (jobs API, generation worker) read through
``TemplateRepository.get_version``; keep its fields stable. Stored rows follow docs/data-model.md
(Templates table): immutable version items (``version >= 1``) and one head item (``version = 0``).
"""

# No ``from __future__ import annotations`` here: pydantic then reads each field's type as an object
# instead of compiling and evaluating its string, a cheaper cold import (benchmarks/cold_start.py).

from typing import Any, Self

from pydantic import ConfigDict, Field

from functions.common.catalogue import DEFAULT_TIER, MODELS, TIERS, tiers_of
from functions.common.models import DeferredModel
from functions.common.money import DecimalNumber

MAX_STEPS = 10
MAX_DEFINITION_BYTES = 50 * 1024
STEP_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"


class TemplateStep(DeferredModel):
    model_config = ConfigDict(extra="forbid")

    # The rules are checked by template analysis (a 400 naming the step); the schema states them.
    id: str = Field(
        description="Identifier-like, unique in the template; later steps read `steps.<id>.output`.",
        json_schema_extra={"pattern": STEP_ID_PATTERN, "not": {"const": "steps"}},
    )
    prompt: str = Field(
        description=(
            "A Jinja2 template rendered with the seed record as its context: it must compile in the "
            "sandbox, and expressions that read no seed field must stay within its limits."
        ),
        json_schema_extra={"pattern": r"\S"},
    )
    model: str | None = Field(
        default=None,
        max_length=256,
        description="A model of `GET /models`: its alias (`llama-3.1-8b`), Bedrock id or a tier name.",
    )
    model_tier: str | None = Field(
        default=None,
        max_length=64,
        description=(
            "`tier-1`/`cheap`, `tier-2`/`balanced`, `tier-3`/`premium`; `model` wins. Default: tier-1."
        ),
    )


class TemplateDefinition(DeferredModel):
    model_config = ConfigDict(extra="forbid")

    steps: list[TemplateStep] = Field(
        description=f"1 to {MAX_STEPS} steps with distinct ids; the whole definition at most 50 KB.",
        json_schema_extra={"minItems": 1, "maxItems": MAX_STEPS},
    )


# ---------------------------------------------------------------- domain


class ForkedFrom(DeferredModel):
    """The template version a template was forked from (``POST /templates/{id}/fork``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    template_id: str
    version: int = Field(ge=1)


class TemplateVersion(DeferredModel):
    """One immutable version of a template, as stored in its version item."""

    model_config = ConfigDict(frozen=True)

    template_id: str
    version: int = Field(ge=1)
    user_id: str
    name: str
    description: str | None = None
    is_public: bool = False
    template_definition: TemplateDefinition
    schema_requirements: list[str] = Field(default_factory=list)
    created_at: str
    forked_from: ForkedFrom | None = None

    def is_readable_by(self, user_id: str) -> bool:
        """The owner reads every version; anyone reads a version stored as public."""
        return self.is_public or self.user_id == user_id

    def is_owned_by(self, user_id: str) -> bool:
        return self.user_id == user_id


class TemplateHead(DeferredModel):
    """The head item (``version = 0``): the template's current name, visibility and latest version."""

    model_config = ConfigDict(frozen=True)

    template_id: str
    user_id: str
    latest_version: int = Field(ge=1)
    name: str
    description: str | None = None
    is_public: bool = False
    schema_requirements: list[str] | None = Field(
        default=None, description="The latest version's; None on heads written before it was kept there."
    )
    created_at: str
    updated_at: str
    forked_from: ForkedFrom | None = None
    # Usage counters (docs/data-model.md): jobs ever created on it, forks ever made of it, their sum.
    job_count: int = 0
    fork_count: int = 0
    popularity: int = 0


# ---------------------------------------------------------------- requests


class CreateTemplateRequest(DeferredModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    is_public: bool = Field(default=False, strict=True)  # a JSON boolean, not "yes" or 1
    template_definition: TemplateDefinition


class UpdateTemplateRequest(DeferredModel):
    """A new version: the definition is required; name, description and visibility default to the
    latest version's."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    is_public: bool | None = Field(default=None, strict=True)
    template_definition: TemplateDefinition


# ---------------------------------------------------------------- responses


class TemplateWriteResponse(DeferredModel):
    template_id: str
    version: int
    schema_requirements: list[str]


class TemplateResponse(DeferredModel):
    template_id: str
    version: int
    name: str
    description: str | None = None
    is_public: bool
    is_owner: bool
    template_definition: TemplateDefinition
    schema_requirements: list[str]
    created_at: str
    forked_from: ForkedFrom | None = None

    @classmethod
    def of(cls, template: TemplateVersion, caller: str) -> Self:
        return cls(
            template_id=template.template_id,
            version=template.version,
            name=template.name,
            description=template.description,
            is_public=template.is_public,
            is_owner=template.is_owned_by(caller),
            template_definition=template.template_definition,
            schema_requirements=list(template.schema_requirements),
            created_at=template.created_at,
            forked_from=template.forked_from,
        )


class TemplateSummary(DeferredModel):
    template_id: str
    latest_version: int
    name: str
    description: str | None = None
    is_public: bool
    is_owner: bool
    schema_requirements: list[str] = Field(description="The seed fields the latest version reads.")
    created_at: str
    updated_at: str


class TemplateListResponse(DeferredModel):
    templates: list[TemplateSummary]
    last_key: str | None = Field(
        default=None, description="Opaque cursor; present while more templates remain. Pass it back."
    )


class TemplateDeleteResponse(DeferredModel):
    message: str
    template_id: str
    versions_deleted: int


def definition_to_dict(definition: TemplateDefinition) -> dict[str, Any]:
    """The definition as stored and as measured for the size limit (no null optional fields)."""
    return definition.model_dump(exclude_none=True)


class CatalogueModel(DeferredModel):
    alias: str = Field(description="What a step's `model` may say, e.g. `llama-3.1-8b`.")
    model_id: str = Field(description="The Bedrock model id the worker invokes and bills (also accepted).")
    name: str
    tiers: list[str] = Field(description="The tier names that choose this model.")
    input_per_million: DecimalNumber = Field(description="US dollars per million input tokens.")
    output_per_million: DecimalNumber = Field(description="US dollars per million output tokens.")


class ModelListResponse(DeferredModel):
    models: list[CatalogueModel]
    tiers: dict[str, str] = Field(description="Tier name -> the alias of the model it chooses.")
    default_tier: str = Field(description="The tier of a step that names neither model nor tier.")
    currency: str = "USD"

    @classmethod
    def catalogue(cls) -> Self:
        return cls(
            models=[
                CatalogueModel(
                    alias=price.alias,
                    model_id=price.model_id,
                    name=price.name,
                    tiers=tiers_of(price.model_id),
                    input_per_million=price.input_per_million,
                    output_per_million=price.output_per_million,
                )
                for price in MODELS.values()
            ],
            tiers={tier: MODELS[model_id].alias for tier, model_id in TIERS.items()},
            default_tier=DEFAULT_TIER,
        )
