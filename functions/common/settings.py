"""Settings read from the environment once, at cold start, into pydantic models.

Business code never reads ``os.environ``: handlers build the settings model they need with
``load_settings`` and pass values down as constructor arguments. Each model is built from small
mixins so a function only requires the resources it really uses. Resource names (tables, bucket,
bus, ARNs) have no defaults: a function deployed without one fails at cold start naming the variable,
instead of talking to some other deployment's resource.
"""

from __future__ import annotations

from functools import cache
from typing import TypeVar

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class _Base(BaseSettings):
    # defer_build: a handler builds the schema of the one settings model it loads (functions.common.models).
    model_config = SettingsConfigDict(extra="ignore", frozen=True, defer_build=True)

    aws_region: str = Field(default="us-east-1", validation_alias="AWS_REGION")


class JobsTableSettings(_Base):
    jobs_table: str = Field(validation_alias="JOBS_TABLE")


class QueueTableSettings(_Base):
    queue_table: str = Field(validation_alias="QUEUE_TABLE")


class TemplatesTableSettings(_Base):
    templates_table: str = Field(validation_alias="TEMPLATES_TABLE")


class CostTrackingTableSettings(_Base):
    cost_tracking_table: str = Field(validation_alias="COST_TRACKING_TABLE")


class IdempotencyTableSettings(_Base):
    idempotency_table: str = Field(validation_alias="IDEMPOTENCY_TABLE")
    # How long a create with an Idempotency-Key replays its first answer.
    idempotency_ttl_seconds: int = Field(default=3600, ge=60, validation_alias="IDEMPOTENCY_TTL_SECONDS")


class BucketSettings(_Base):
    bucket_name: str = Field(validation_alias="BUCKET_NAME")


class EventBusSettings(_Base):
    event_bus_name: str = Field(validation_alias="EVENT_BUS_NAME")


class UploadSettings(_Base):
    upload_max_bytes: int = Field(default=100 * 1024 * 1024, gt=0, validation_alias="UPLOAD_MAX_BYTES")
    upload_url_expires_seconds: int = Field(default=900, gt=0, validation_alias="UPLOAD_URL_EXPIRES_SECONDS")


class ConcurrencySettings(_Base):
    max_running_jobs: int = Field(default=5, ge=1, le=1000, validation_alias="MAX_RUNNING_JOBS")


class JobQuotaSettings(_Base):
    """Per-user quotas of the jobs API (429 with Retry-After past them)."""

    max_queued_jobs_per_user: int = Field(default=100, ge=1, validation_alias="MAX_QUEUED_JOBS_PER_USER")
    max_jobs_created_per_minute: int = Field(default=60, ge=1, validation_alias="MAX_JOBS_CREATED_PER_MINUTE")


class LifecycleSettings(_Base):
    lifecycle_state_machine_arn: str = Field(validation_alias="LIFECYCLE_STATE_MACHINE_ARN")


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


@cache
def load_settings(model: type[SettingsT]) -> SettingsT:
    """Build (once per process) and validate a settings model from the environment.

    A missing or invalid variable raises ``pydantic.ValidationError`` at cold start, so a
    misconfigured function fails on its first invocation with a message naming the variable.
    """
    return model()
