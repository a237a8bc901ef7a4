"""Worker models: the work item it receives, what it reads of the job, what it writes.

Shapes follow docs/data-model.md ("Work item", Jobs, CostTracking, S3) and docs/worker-contract.md.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from functions.common.sizes import DEFAULT_TASK_SIZE, TaskSize
from functions.common.status import JobStatus
from functions.common.storage import OutputFormat

MAX_BATCH_SIZE = 10_000


class WorkItem(BaseModel):
    """The SQS message body the lifecycle sends with ``.waitForTaskToken``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    job_id: str = Field(min_length=1, max_length=128)
    user_id: str = Field(min_length=1)
    task_token: str = Field(min_length=1)
    template_id: str = Field(min_length=1)
    template_version: int = Field(ge=1)
    seed_data_path: str = Field(min_length=1)
    output_format: OutputFormat
    num_records: int = Field(ge=1, le=1_000_000)
    batch_size: int = Field(ge=1, le=MAX_BATCH_SIZE)
    # "partition": generate batches first_batch..end_batch-1 and answer for them only; "export": join
    # the committed parts into the export files; "job" (no kind): the whole job on one worker, then
    # its export (the single-item protocol, kept for items sent before partitions existed).
    kind: Literal["job", "partition", "export"] = "job"
    task_size: TaskSize = DEFAULT_TASK_SIZE
    partition: int | None = Field(default=None, ge=0)
    first_batch: int | None = Field(default=None, ge=0)
    end_batch: int | None = Field(default=None, ge=1)
    partial: bool = False  # an export of a stopped job: only the batches that committed

    @model_validator(mode="after")
    def _partition_range(self) -> WorkItem:
        if self.kind == "partition":
            if self.partition is None or self.first_batch is None or self.end_batch is None:
                raise ValueError("a partition work item needs partition, first_batch and end_batch")
            if not self.first_batch < self.end_batch <= self.batch_count:
                raise ValueError("a partition's batches must be first_batch < end_batch <= the job's batches")
        return self

    @property
    def batch_count(self) -> int:
        return -(-self.num_records // self.batch_size)

    @property
    def batches(self) -> range:
        """The batch indexes this item generates (the whole job unless it is a partition)."""
        if self.kind == "partition" and self.first_batch is not None and self.end_batch is not None:
            return range(self.first_batch, self.end_batch)
        return range(self.batch_count)

    @property
    def records_token(self) -> bool:
        """Whether this item's worker records its task token on the job (the cancellation state
        machine fails that token). An export never does: it runs for a job that is stopping too."""
        return self.kind != "export"

    def batch_range(self, batch_index: int) -> range:
        """The record positions (0-based, over ``num_records``) of one batch."""
        start = batch_index * self.batch_size
        return range(start, min(start + self.batch_size, self.num_records))


class JobControl(BaseModel):
    """What the worker reads of the Jobs item between batches."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    job_id: str
    status: JobStatus
    budget_limit: Decimal | None = None
    cancel_requested_at: str | None = None
    budget_exceeded: bool = False
    cost: dict[str, Decimal] | None = None  # the rolled-up cost of every partition
    partition_strategy: str | None = None
    export_config: dict[str, Any] | None = None

    @property
    def running(self) -> bool:
        return self.status is JobStatus.RUNNING

    @property
    def rolled_up_total(self) -> Decimal:
        return Decimal((self.cost or {}).get("total", 0))


class StepResult(BaseModel):
    prompt: str
    output: str
    model: str


class GeneratedRecord(BaseModel):
    """One line of ``jobs/{job_id}/outputs/part-NNNNN.jsonl`` (and of the export)."""

    id: str
    job_id: str
    seed_index: int
    created_at: str
    steps: dict[str, StepResult]


class RecordFailure(BaseModel):
    """One line of ``jobs/{job_id}/errors/part-NNNNN.jsonl``: a record that could not be made."""

    position: int
    seed_index: int
    step_id: str
    error: str


class Usage(BaseModel):
    """Tokens and money of some unit of work. Money is Decimal."""

    tokens_in: int = 0
    tokens_out: int = 0
    records: int = 0
    records_failed: int = 0
    bedrock: Decimal = Decimal(0)
    fargate: Decimal = Decimal(0)
    s3: Decimal = Decimal(0)

    @property
    def total(self) -> Decimal:
        return self.bedrock + self.fargate + self.s3

    def plus(self, other: Usage) -> Usage:
        return Usage(
            tokens_in=self.tokens_in + other.tokens_in,
            tokens_out=self.tokens_out + other.tokens_out,
            records=self.records + other.records,
            records_failed=self.records_failed + other.records_failed,
            bedrock=self.bedrock + other.bedrock,
            fargate=self.fargate + other.fargate,
            s3=self.s3 + other.s3,
        )


class Checkpoint(BaseModel):
    """``jobs/{job_id}/checkpoint.json``: the batches committed so far and what they used."""

    job_id: str
    partition: int | None = None  # None: the checkpoint of a whole-job ("job") work item
    next_batch: int = 0
    usage: Usage = Field(default_factory=Usage)
    first_error: str | None = None
    updated_at: str | None = None

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> Checkpoint:
        return cls.model_validate_json(text)


class Outcome(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    ABANDONED = "ABANDONED"  # stopped without reporting (shutdown): another worker resumes it


class JobResult(BaseModel):
    """What processing one work item came to, and what to report to Step Functions."""

    outcome: Outcome
    records_generated: int = 0
    records_failed: int = 0
    output_key: str | None = None
    error: str | None = None
    cause: str | None = None
    # An export's answer: how many files, and the job's final tokens and cost (every delta summed).
    files: int | None = None
    final_usage: Usage | None = None

    def success_output(self) -> dict[str, Any]:
        output: dict[str, Any] = {"records_generated": self.records_generated, "output_key": self.output_key}
        if self.files is not None:
            output["files"] = self.files
            output["output_key"] = self.output_key or ""
        if self.final_usage is not None:
            usage = self.final_usage
            output["tokens_used"] = usage.tokens_in + usage.tokens_out
            # Strings: the lifecycle writes them as DynamoDB numbers unchanged (no float on the way).
            output["cost"] = {
                "bedrock": str(usage.bedrock),
                "fargate": str(usage.fargate),
                "s3": str(usage.s3),
                "total": str(usage.total),
            }
        return output
