"""Request and response models of the template product routes: versions, marketplace, fork,
YAML export/import and the dry run (functions/templates/product_handler.py)."""

# No ``from __future__ import annotations`` here: pydantic then reads each field's type as an object
# instead of compiling and evaluating its string, a cheaper cold import (benchmarks/cold_start.py).

import json
from enum import StrEnum
from typing import Any, Self

from pydantic import ConfigDict, Field, field_validator, model_validator
from pydantic.config import JsonDict

from functions.common.models import DeferredModel
from functions.common.money import DecimalNumber
from functions.common.sizes import DEFAULT_TASK_SIZE, TaskSize
from functions.templates.models import ForkedFrom


def _json_number(value: Any) -> Any:
    """A JSON number, as the schema's ``integer`` means it (``2`` and ``2.0``), never ``"2"`` or ``true``."""
    if isinstance(value, str | bool):
        raise ValueError("must be a JSON integer")
    return value


# YAML export/import (functions/templates/portable.py parses and writes the documents). Here, not
# there, so the routes' declarations do not import PyYAML at cold start.
MAX_IMPORT_BYTES = 128 * 1024
YAML_CONTENT_TYPE = "application/yaml"
# What an import body may be sent as (JSON is YAML too).
IMPORT_CONTENT_TYPES = frozenset(
    {
        "application/yaml",
        "application/x-yaml",
        "text/yaml",
        "text/x-yaml",
        "text/plain",
        "application/json",
    }
)

MAX_SEED_RECORD_BYTES = 256 * 1024
MAX_RECORD_INDEX = 10_000
_EXAMPLE_ID = "3f6c2a1e-8b7d-4c5e-9f10-2a3b4c5d6e7f"
_EXAMPLE_SOURCE = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"

# ------------------------------------------------------------------ versions


class TemplateVersionSummary(DeferredModel):
    version: int
    name: str
    description: str | None = None
    is_public: bool
    schema_requirements: list[str]
    created_at: str


class TemplateVersionsResponse(DeferredModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "template_id": _EXAMPLE_ID,
                    "versions": [
                        {
                            "version": 2,
                            "name": "Author bios",
                            "description": "One bio per author",
                            "is_public": True,
                            "schema_requirements": ["author.name"],
                            "created_at": "2026-11-30T12:05:00.000Z",
                        }
                    ],
                    "last_key": "eyJ2ZXJzaW9uIjoyfQ",
                }
            ]
        }
    )

    template_id: str
    versions: list[TemplateVersionSummary] = Field(description="Newest first.")
    last_key: str | None = Field(
        default=None, description="Opaque cursor; present while more versions remain. Pass it back."
    )


# --------------------------------------------------------------- marketplace


class MarketplaceSort(StrEnum):
    RECENT = "recent"
    POPULAR = "popular"
    NAME = "name"


class MarketplaceEntry(DeferredModel):
    template_id: str
    version: int = Field(description="The latest version, the one a job or fork uses by default.")
    name: str
    description: str | None = None
    is_owner: bool
    job_count: int = Field(description="Jobs ever created on the template.")
    fork_count: int = Field(description="Forks ever made of the template.")
    popularity: int = Field(description="job_count + fork_count: the `popular` order.")
    forked_from: ForkedFrom | None = None
    created_at: str
    updated_at: str


class MarketplaceResponse(DeferredModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "templates": [
                        {
                            "template_id": _EXAMPLE_ID,
                            "version": 3,
                            "name": "Author bios",
                            "description": "One bio per author",
                            "is_owner": False,
                            "job_count": 41,
                            "fork_count": 7,
                            "popularity": 48,
                            "forked_from": None,
                            "created_at": "2026-11-01T09:00:00.000Z",
                            "updated_at": "2026-11-30T12:05:00.000Z",
                        }
                    ],
                    "last_key": None,
                }
            ]
        }
    )

    templates: list[MarketplaceEntry]
    last_key: str | None = Field(
        default=None,
        description=(
            "Opaque cursor; present while more templates may remain. With `q` a page can hold fewer "
            "than `limit` templates (even none) and still have a cursor: each request reads a bounded "
            "part of the catalogue, so follow the cursor until it is absent."
        ),
    )


# ---------------------------------------------------------------------- fork


class ForkRequest(DeferredModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"version": 2, "name": "My author bios"}]},
    )

    # A JSON integer and a JSON boolean, as the schema says (not "2" or 1).
    version: int | None = Field(default=None, ge=1, le=1_000_000, description="Default: the latest.")
    name: str | None = Field(
        default=None, min_length=1, max_length=200, description="Default: the source's name."
    )
    description: str | None = Field(
        default=None, max_length=2000, description="Default: the source's description."
    )
    is_public: bool = Field(
        default=False, strict=True, description="A fork is private unless asked otherwise."
    )

    _json_integers = field_validator("version", mode="before")(_json_number)


class ForkResponse(DeferredModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "template_id": _EXAMPLE_ID,
                    "version": 1,
                    "schema_requirements": ["author.name"],
                    "forked_from": {"template_id": _EXAMPLE_SOURCE, "version": 2},
                }
            ]
        }
    )

    template_id: str
    version: int
    schema_requirements: list[str]
    forked_from: ForkedFrom


# ------------------------------------------------------------------- dry run


# The seed rule of the dry run, stated in its schema as the validator enforces it: exactly one of a
# non-null seed_record or seed_data_path, and record_index (when not null) only with seed_data_path.
_ONE_SEED: JsonDict = {
    "oneOf": [
        {
            "required": ["seed_record"],
            "properties": {
                "seed_record": {"type": "object"},
                "seed_data_path": {"type": "null"},
                "record_index": {"type": "null"},
            },
        },
        {
            "required": ["seed_data_path"],
            "properties": {"seed_record": {"type": "null"}, "seed_data_path": {"type": "string"}},
        },
    ]
}


class DryRunRequest(DeferredModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            **_ONE_SEED,
            "examples": [
                {"seed_record": {"author": {"name": "Ada Lovelace"}}, "num_records": 1000},
                {"seed_data_path": "seed-data/USER_ID/authors.jsonl", "record_index": 3, "call_model": False},
            ],
        },
    )

    version: int | None = Field(default=None, ge=1, le=1_000_000, description="Default: the latest.")
    seed_record: dict[str, Any] | None = Field(
        default=None, description="The seed record to render with (a JSON object of at most 256 KB)."
    )
    seed_data_path: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="One of your uploads (`seed-data/{you}/...`), instead of `seed_record`.",
    )
    record_index: int | None = Field(
        default=None,
        ge=0,
        le=MAX_RECORD_INDEX,
        description=f"With `seed_data_path`: which record (0-based, at most {MAX_RECORD_INDEX}). Default 0.",
    )
    call_model: bool = Field(
        default=True,
        strict=True,
        description="False: render the prompts only; tokens and cost are then estimated.",
    )
    num_records: int = Field(default=100, ge=1, le=1_000_000, description="The job size the estimate is for.")
    task_size: TaskSize = Field(
        default=DEFAULT_TASK_SIZE,
        description="The job's `task_size`: the worker task the Fargate share is priced at.",
    )

    _json_integers = field_validator("version", "record_index", "num_records", mode="before")(_json_number)

    @field_validator("seed_record")
    @classmethod
    def _bounded_seed(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(json.dumps(value, default=str)) > MAX_SEED_RECORD_BYTES:
            raise ValueError(f"seed_record is larger than {MAX_SEED_RECORD_BYTES} bytes")
        return value

    @model_validator(mode="after")
    def _one_seed(self) -> Self:
        if (self.seed_record is None) == (self.seed_data_path is None):
            raise ValueError("give exactly one of seed_record or seed_data_path")
        if self.record_index is not None and self.seed_data_path is None:
            raise ValueError("record_index goes with seed_data_path")
        return self


class DryRunStep(DeferredModel):
    id: str
    model: str = Field(description="The model id the step is billed at.")
    prompt: str = Field(description="The rendered prompt.")
    output: str | None = Field(description="The model's answer; null when the model was not called.")
    model_called: bool
    tokens_in: int
    tokens_out: int
    tokens_estimated: bool = Field(
        description="True when the counts are estimated from text, not reported by the model."
    )
    cost: DecimalNumber = Field(description="Dollars.")
    duration_ms: int


class DryRunRecord(DeferredModel):
    tokens_in: int
    tokens_out: int
    cost: DecimalNumber = Field(description="Dollars: the model cost of this one record.")
    duration_ms: int


class JobEstimate(DeferredModel):
    num_records: int
    task_size: TaskSize
    parallel_partitions: int = Field(description="Partitions of the job in flight at once.")
    record_concurrency: int = Field(description="Records the job generates at once, in all.")
    seconds_per_record: float
    model_cost: DecimalNumber = Field(description="Dollars.")
    fargate_cost: DecimalNumber = Field(description="Dollars: the worker task's share.")
    total_cost: DecimalNumber = Field(description="Dollars: model + Fargate.")
    duration_seconds: int = Field(description="Generation time once the job runs (no queueing).")
    assumptions: list[str]


class DryRunResponse(DeferredModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "template_id": _EXAMPLE_ID,
                    "version": 2,
                    "seed_data_path": None,
                    "record_index": None,
                    "steps": [
                        {
                            "id": "bio",
                            "model": "meta.llama3-1-8b-instruct-v1:0",
                            "prompt": "Write a short bio of Ada Lovelace.",
                            "output": "Ada Lovelace was a mathematician ...",
                            "model_called": True,
                            "tokens_in": 9,
                            "tokens_out": 120,
                            "tokens_estimated": False,
                            "cost": "0.00002838",
                            "duration_ms": 1480,
                        }
                    ],
                    "record": {"tokens_in": 9, "tokens_out": 120, "cost": "0.00002838", "duration_ms": 1480},
                    "estimate": {
                        "num_records": 1000,
                        "task_size": "medium",
                        "parallel_partitions": 1,
                        "record_concurrency": 1,
                        "seconds_per_record": 1.48,
                        "model_cost": "0.02838",
                        "fargate_cost": "0.008",
                        "total_cost": "0.03638",
                        "duration_seconds": 1480,
                        "assumptions": ["Every record costs what this one did: ..."],
                    },
                }
            ]
        }
    )

    template_id: str
    version: int
    seed_data_path: str | None = None
    record_index: int | None = None
    steps: list[DryRunStep]
    record: DryRunRecord
    estimate: JobEstimate
