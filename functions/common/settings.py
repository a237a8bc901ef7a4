"""Settings read from the environment once, at cold start, into pydantic models.

Business code never reads ``os.environ``: handlers build the settings model they need with
``load_settings`` and pass values down as constructor arguments. Each model is built from small
mixins so a function only requires the resources it really uses. Resource names (tables, bucket,
bus, ARNs) have no defaults: a function deployed without one fails at cold start naming the variable,
instead of talking to some other deployment's resource.

The models are plain pydantic models whose constructor reads each field's variable (its
``validation_alias``, matched exactly) from ``os.environ``; keyword arguments, by variable name, win
over the environment. pydantic validates and converts the strings. This is what pydantic-settings'
``BaseSettings`` did for these models, without importing its every source provider (dotenv, CLI,
cloud secret stores), which cost 0.15-0.3x of an API cold start (``benchmarks/cold_start.py``). A
field that holds JSON (a mapping) parses its string itself (``WorkerSettings.model_rate_limits``).
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field


class EnvironmentSettings(BaseModel):
    """Base of every settings model: each field names its environment variable as ``validation_alias``."""

    # defer_build: a handler builds the schema of the one settings model it loads (functions.common.models).
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)

    aws_region: str = Field(default="us-east-1", validation_alias="AWS_REGION")

    def __init__(self, **values: Any) -> None:
        environment = {name: os.environ[name] for name in self.variables() if name in os.environ}
        super().__init__(**(environment | values))

    @classmethod
    def variables(cls) -> list[str]:
        """The environment variables this model reads, one per field."""
        return [f.validation_alias for f in cls.model_fields.values() if isinstance(f.validation_alias, str)]

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        # A field without its variable's name would silently never be read from the environment.
        unnamed = [name for name, f in cls.model_fields.items() if not isinstance(f.validation_alias, str)]
        if unnamed:
            raise TypeError(f"{cls.__name__}: settings fields without validation_alias: {unnamed}")


class JobsTableSettings(EnvironmentSettings):
    jobs_table: str = Field(validation_alias="JOBS_TABLE")


class QueueTableSettings(EnvironmentSettings):
    queue_table: str = Field(validation_alias="QUEUE_TABLE")


class TemplatesTableSettings(EnvironmentSettings):
    templates_table: str = Field(validation_alias="TEMPLATES_TABLE")


class CostTrackingTableSettings(EnvironmentSettings):
    cost_tracking_table: str = Field(validation_alias="COST_TRACKING_TABLE")


class IdempotencyTableSettings(EnvironmentSettings):
    idempotency_table: str = Field(validation_alias="IDEMPOTENCY_TABLE")
    # How long a create with an Idempotency-Key replays its first answer.
    idempotency_ttl_seconds: int = Field(default=3600, ge=60, validation_alias="IDEMPOTENCY_TTL_SECONDS")


class BucketSettings(EnvironmentSettings):
    bucket_name: str = Field(validation_alias="BUCKET_NAME")


class EventBusSettings(EnvironmentSettings):
    event_bus_name: str = Field(validation_alias="EVENT_BUS_NAME")


class UploadSettings(EnvironmentSettings):
    upload_max_bytes: int = Field(default=100 * 1024 * 1024, gt=0, validation_alias="UPLOAD_MAX_BYTES")
    upload_url_expires_seconds: int = Field(default=900, gt=0, validation_alias="UPLOAD_URL_EXPIRES_SECONDS")


class ConcurrencySettings(EnvironmentSettings):
    max_running_jobs: int = Field(default=5, ge=1, le=1000, validation_alias="MAX_RUNNING_JOBS")


class JobQuotaSettings(EnvironmentSettings):
    """Per-user quotas of the jobs API (429 with Retry-After past them)."""

    max_queued_jobs_per_user: int = Field(default=100, ge=1, validation_alias="MAX_QUEUED_JOBS_PER_USER")
    max_jobs_created_per_minute: int = Field(default=60, ge=1, validation_alias="MAX_JOBS_CREATED_PER_MINUTE")


class LifecycleSettings(EnvironmentSettings):
    lifecycle_state_machine_arn: str = Field(validation_alias="LIFECYCLE_STATE_MACHINE_ARN")


SettingsT = TypeVar("SettingsT", bound=EnvironmentSettings)


@cache
def load_settings(model: type[SettingsT]) -> SettingsT:
    """Build (once per process) and validate a settings model from the environment.

    A missing or invalid variable raises ``pydantic.ValidationError`` at cold start, so a
    misconfigured function fails on its first invocation with a message naming the variable.
    """
    return model()
