"""The worker's settings, read once at start (docs/data-model.md, "Settings")."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from functions.common.settings import (
    BucketSettings,
    CostTrackingTableSettings,
    JobsTableSettings,
    TemplatesTableSettings,
)


class ModelRateLimit(BaseModel):
    """One model's budget for one worker process (its share of the account's Bedrock quota)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)


class WorkerSettings(JobsTableSettings, TemplatesTableSettings, CostTrackingTableSettings, BucketSettings):
    work_queue_url: str = Field(validation_alias="WORK_QUEUE_URL")
    # bedrock in AWS; the local stage sets offline.
    model_provider: Literal["bedrock", "offline"] = Field(
        default="bedrock", validation_alias="MODEL_PROVIDER"
    )
    # The ECS task definition's size, which the Fargate share of each batch's cost is billed at.
    task_cpu: int = Field(default=1024, ge=256, validation_alias="WORKER_TASK_CPU")
    task_memory_mib: int = Field(default=2048, ge=512, validation_alias="WORKER_TASK_MEMORY_MIB")
    heartbeat_seconds: int = Field(default=30, ge=1, validation_alias="WORKER_HEARTBEAT_SECONDS")
    # No progress for this long (a hung model call): stop heartbeating so the lifecycle's heartbeat
    # timeout ends the job instead of it staying RUNNING forever.
    stall_seconds: int = Field(default=900, ge=10, validation_alias="WORKER_STALL_SECONDS")
    visibility_timeout_seconds: int = Field(
        default=300, ge=30, validation_alias="WORKER_VISIBILITY_TIMEOUT_SECONDS"
    )
    poll_wait_seconds: int = Field(default=20, ge=0, le=20, validation_alias="WORKER_POLL_WAIT_SECONDS")
    # A work item whose processing crashed this many times is failed instead of retried.
    max_attempts: int = Field(default=3, ge=1, validation_alias="WORKER_MAX_ATTEMPTS")
    prompt_max_chars: int = Field(default=200_000, ge=1000, validation_alias="PROMPT_MAX_CHARS")
    prompt_render_seconds: float = Field(default=2.0, gt=0, validation_alias="PROMPT_RENDER_SECONDS")
    # Records in flight at once (functions/worker/concurrency.py): the ceiling of the adaptive window.
    model_max_concurrency: int = Field(default=16, ge=1, le=256, validation_alias="MODEL_MAX_CONCURRENCY")
    # JSON {"<model id>": {"rpm": N, "tpm": N}}: per-model request/token budgets of this process.
    model_rate_limits: dict[str, ModelRateLimit] = Field(
        default_factory=dict, validation_alias="MODEL_RATE_LIMITS"
    )
    # The offline model service (MODEL_PROVIDER=offline): latency per call and a quota that throttles.
    offline_latency_ms: float = Field(default=0, ge=0, le=600_000, validation_alias="OFFLINE_LATENCY_MS")
    offline_jitter_ms: float = Field(default=0, ge=0, le=600_000, validation_alias="OFFLINE_JITTER_MS")
    offline_rpm: int | None = Field(default=None, ge=1, validation_alias="OFFLINE_RPM")
    bedrock_max_tokens: int = Field(default=1024, ge=1, validation_alias="BEDROCK_MAX_TOKENS")
    cost_ttl_days: int = Field(default=90, ge=1, validation_alias="COST_TTL_DAYS")
    # Set by ECS inside a task (the container agent's endpoint); absent locally, where task
    # scale-in protection is a no-op (functions/worker/protection.py).
    ecs_agent_uri: str | None = Field(default=None, validation_alias="ECS_AGENT_URI")
    # How long one protection call protects the task; renewed with heartbeats at half this.
    protection_minutes: int = Field(default=10, ge=1, le=2880, validation_alias="WORKER_PROTECTION_MINUTES")

    @field_validator("model_rate_limits", mode="before")
    @classmethod
    def _parse_json(cls, value: Any) -> Any:
        # The environment gives a string: the variable holds JSON (invalid JSON fails naming it).
        return json.loads(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _renewal_fits_between_heartbeats(self) -> WorkerSettings:
        # Renewal happens on a heartbeat once half the period has passed: beats must come at
        # least that often or the protection lapses mid-job.
        if self.heartbeat_seconds * 2 > self.protection_minutes * 60:
            raise ValueError("WORKER_PROTECTION_MINUTES must be at least twice WORKER_HEARTBEAT_SECONDS")
        return self
