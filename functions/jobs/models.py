"""Jobs: request, response, domain and stored-row models.

The stored row (``JobRecord``) follows docs/data-model.md (Jobs table) verbatim. Money is
``Decimal`` end to end; JSON answers write every amount as an exact JSON number (``0.000000461``,
see ``functions.common.money``) and requests take ``budget_limit`` as a number or a numeric string.
Counts (records, tokens, priority, versions) are JSON integers.
"""

# No ``from __future__ import annotations`` here: pydantic then reads each field's type as an object
# instead of compiling and evaluating its string, a cheaper cold import (benchmarks/cold_start.py).

import re
from decimal import ROUND_UP, Decimal
from typing import Annotated, Any, Self

from pydantic import ConfigDict, Field, WithJsonSchema, field_validator
from pydantic_core import PydanticCustomError

from functions.common.exports import PARTITION_STRATEGIES, PARTITION_STRATEGY_PATTERN, ExportConfig
from functions.common.json_types import json_int
from functions.common.models import DeferredModel
from functions.common.money import DecimalNumber
from functions.common.sizes import DEFAULT_TASK_SIZE, TaskSize
from functions.common.status import JobStatus
from functions.common.storage import OutputFormat

# budget_limit as a string: plain dollars in (0, 1000] with at most 6 decimals ("12.50", "0.000001").
# The same pattern is in the schema, so the document and the check can never disagree.
BUDGET_STRING_PATTERN = r"^(?=[\d.]*[1-9])0*(?:(?:[1-9]\d{0,2})?(?:\.\d{0,6})?|1000(?:\.0{0,6})?)(?![\s\S])"
_BUDGET_STRING = re.compile(BUDGET_STRING_PATTERN)


def _budget_schema(schema: dict[str, Any]) -> None:
    schema.pop("anyOf", None)
    schema.pop("type", None)
    schema["anyOf"] = [
        {"type": "number", "exclusiveMinimum": 0, "maximum": 1000},
        {"type": "string", "pattern": BUDGET_STRING_PATTERN},
    ]


# ---------------------------------------------------------------- requests

Money = Annotated[
    Decimal,
    Field(gt=0, le=1000, max_digits=12, decimal_places=6, allow_inf_nan=False),
    # A JSON number, as the spec writes it; a numeric string ("50.0") is accepted too.
    WithJsonSchema({"type": "number", "exclusiveMinimum": 0, "maximum": 1000}),
]


class CreateJobRequest(DeferredModel):
    model_config = ConfigDict(extra="forbid")

    template_id: str = Field(min_length=1, max_length=128)
    template_version: json_int(1, 1_000_000) | None = Field(  # type: ignore[valid-type]
        default=None, description="Default: the template's latest version."
    )
    seed_data_path: str = Field(
        min_length=1,
        max_length=1024,
        description=(
            "Your seed data, under `seed-data/{you}/`: an uploaded object's key "
            "(`seed-data/{you}/authors.jsonl`), the same as an `s3://{bucket}/{key}` URI of this "
            "deployment's bucket, or a folder ending in `/` (`seed-data/{you}/batch-1/`): every seed "
            "file in it, in key order, read as one stream of records."
        ),
    )
    budget_limit: Money = Field(
        description=(
            'Dollars, 0 < x <= 1000: a number (more than 6 decimals round up) or a string such as "12.50".'
        ),
        json_schema_extra=_budget_schema,
    )
    output_format: OutputFormat
    # JSON integers only: true is not 1, "5" is not 5 (functions.common.json_types).
    num_records: json_int(1, 1_000_000)  # type: ignore[valid-type]
    priority: json_int(1, 10) = Field(default=5, description="1..10, 10 is the most urgent.")  # type: ignore[valid-type]
    task_size: TaskSize = Field(
        default=DEFAULT_TASK_SIZE,
        description="Worker size: small (0.25 vCPU, 0.5 GB), medium (0.5 vCPU, 1 GB), large (1 vCPU, "
        "2 GB), xlarge (2 vCPU, 4 GB). The Fargate share of the cost is billed at this size.",
    )
    partition_strategy: str = Field(
        default="none",
        pattern=PARTITION_STRATEGY_PATTERN,
        description=f"How the export is split into files: {PARTITION_STRATEGIES}.",
        json_schema_extra={"examples": ["none", "records:10000"]},
    )
    export_config: ExportConfig = Field(default_factory=ExportConfig)

    @field_validator("budget_limit", mode="before")
    @classmethod
    def _to_micro_dollars(cls, value: Any) -> Any:
        # A JSON number may have any number of decimals (the schema sets no multipleOf, which
        # floats cannot state exactly): keep it to the micro-dollar, rounded up so the budget is
        # never below what was asked. A string must match the documented pattern.
        if isinstance(value, str) and not _BUDGET_STRING.fullmatch(value):
            raise PydanticCustomError("decimal_parsing", 'A budget string is dollars such as "12.50"')
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 1000:
            amount = Decimal(str(value))
            exponent = amount.as_tuple().exponent
            if isinstance(exponent, int) and exponent < -6:
                return amount.quantize(Decimal("0.000001"), rounding=ROUND_UP)
        return value


class ListJobsQuery(DeferredModel):
    limit: int = Field(default=20, ge=1, le=100)
    status: JobStatus | None = None
    last_key: str | None = None


# ---------------------------------------------------------------- stored row / domain


def _zero() -> Any:
    # Documented as the number 0 (pydantic would write the Decimal default as the string "0").
    return Field(default=Decimal(0), json_schema_extra={"default": 0})


class Cost(DeferredModel):
    model_config = ConfigDict(extra="ignore")

    bedrock: DecimalNumber = _zero()
    fargate: DecimalNumber = _zero()
    s3: DecimalNumber = _zero()
    total: DecimalNumber = _zero()


class JobResult(DeferredModel):
    model_config = ConfigDict(extra="ignore")

    records: int | None = Field(default=None, description="Records in the export files.")
    output_key: str | None = Field(default=None, description="The first export file's key.")
    files: int | None = Field(default=None, description="How many export files there are.")
    partial: bool = Field(
        default=False, description="The export holds the committed part of a job that did not complete."
    )


class _JobFields(DeferredModel):
    """Every field of a job: its config, progress, cost and outcome (never the lifecycle's task token)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    job_id: str
    user_id: str
    status: JobStatus
    template_id: str
    template_version: int
    seed_data_path: str
    budget_limit: DecimalNumber
    output_format: OutputFormat
    num_records: int
    priority: int
    task_size: str | None = None
    partition_strategy: str | None = None
    export_config: dict[str, Any] | None = None
    created_at: str
    updated_at: str
    records_generated: int = 0
    tokens_used: int = 0
    cost: Cost = Field(default_factory=Cost)
    budget_exceeded: bool = False
    cancel_requested_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    result: JobResult | None = None
    error: str | None = None
    cause: str | None = None


class JobRecord(_JobFields):
    """One Jobs item. Unknown attributes are ignored; ``task_token`` is never read into it."""

    def is_owned_by(self, user_id: str) -> bool:
        return self.user_id == user_id


# ---------------------------------------------------------------- responses


class CreateJobResponse(DeferredModel):
    job_id: str
    status: JobStatus
    created_at: str


class JobSummary(DeferredModel):
    job_id: str
    status: JobStatus
    template_id: str
    created_at: str
    updated_at: str
    records_generated: int
    cost_estimate: DecimalNumber = Field(description="Dollars spent so far (the rolled-up `cost.total`).")
    budget_limit: DecimalNumber

    @classmethod
    def of(cls, job: JobRecord) -> Self:
        return cls(
            job_id=job.job_id,
            status=job.status,
            template_id=job.template_id,
            created_at=job.created_at,
            updated_at=job.updated_at,
            records_generated=job.records_generated,
            cost_estimate=job.cost.total,
            budget_limit=job.budget_limit,
        )


class JobListResponse(DeferredModel):
    jobs: list[JobSummary]
    last_key: str | None = Field(
        default=None, description="Opaque cursor; present while more jobs remain. Pass it back unchanged."
    )


def _plain_json(value: Any) -> Any:
    """Stored config back to what the client sent: integral numbers as int, others as float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_plain_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain_json(v) for k, v in value.items()}
    return value


class JobConfig(DeferredModel):
    """What the job was created with (the spec's ``job['config']``), as the job runs it: the template
    version is the one resolved at create time."""

    template_id: str
    template_version: int
    seed_data_path: str
    budget_limit: DecimalNumber
    output_format: OutputFormat
    num_records: int
    task_size: str | None = None
    partition_strategy: str | None = None
    export_config: dict[str, Any] | None = None
    priority: int


class JobDetail(_JobFields):
    """The whole job: its ``config``, progress, cost and outcome (never the lifecycle's task token).
    The config fields are also at the top level, as before ``config`` existed."""

    config: JobConfig
    # Always in the answer: required in the schema, unlike the stored row's defaults.
    records_generated: int
    tokens_used: int
    cost: Cost
    budget_exceeded: bool

    @classmethod
    def of(cls, job: JobRecord) -> Self:
        data = job.model_dump()
        data["export_config"] = _plain_json(job.export_config)
        data["config"] = {name: data[name] for name in JobConfig.model_fields}
        return cls.model_validate(data)


class JobActionResponse(DeferredModel):
    message: str
    job_id: str


class DownloadFile(DeferredModel):
    s3_key: str
    download_url: str


class DownloadResponse(DeferredModel):
    job_id: str
    download_url: str = Field(description="The first (or only) file's link.")
    s3_key: str = Field(description="The first (or only) file's key.")
    output_format: OutputFormat
    expires_in: int = Field(description="Seconds the URLs stay valid.")
    files: list[DownloadFile] = Field(
        description="Every export file in record order, one link each (one file unless the job's "
        "partition_strategy is `records:N`)."
    )
    partial: bool = Field(
        description="True for a job that ended BUDGET_EXCEEDED, CANCELLED or FAILED: the export holds the "
        "batches that committed before it stopped."
    )
    records: int = Field(description="Records in the export files (the job's records_generated).")
