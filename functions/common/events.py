"""Domain events on the ``plot-palette`` bus: one typed detail model per detail type.

The API Lambdas publish through ``EventPublisher``; the state machines put the same shapes with
``events:putEvents`` (tests validate what they emit against these models). ``make schemas``
writes the JSON Schema of every detail into ``docs/events/``. A detail carries ids and small facts,
never secrets, task tokens or seed records.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from pydantic import ConfigDict, Field

from functions.common.models import DeferredModel

# Re-exported: the publisher lives apart so that a Lambda's cold start need not load every model here.
from functions.common.publisher import EventPublisher as EventPublisher
from functions.common.publisher import EventPublishError as EventPublishError

SOURCE_JOBS = "plot-palette.jobs"
SOURCE_TEMPLATES = "plot-palette.templates"
SOURCE_SEED_DATA = "plot-palette.seed-data"


class EventDetail(DeferredModel):
    """Base of every event detail. Subclasses set the two class variables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: ClassVar[str]
    detail_type: ClassVar[str]


class JobEvent(EventDetail):
    source: ClassVar[str] = SOURCE_JOBS

    job_id: str
    user_id: str


class JobQueued(JobEvent):
    detail_type: ClassVar[str] = "Job Queued"

    template_id: str
    template_version: int
    priority: int = Field(ge=1, le=10)
    num_records: int
    created_at: str


class JobStarted(JobEvent):
    detail_type: ClassVar[str] = "Job Started"

    started_at: str


class JobCompleted(JobEvent):
    detail_type: ClassVar[str] = "Job Completed"

    completed_at: str
    records_generated: int | None = None
    output_key: str | None = None


class JobFailed(JobEvent):
    detail_type: ClassVar[str] = "Job Failed"

    completed_at: str
    error: str
    cause: str | None = None


class JobBudgetExceeded(JobEvent):
    detail_type: ClassVar[str] = "Job Budget Exceeded"

    completed_at: str


class JobCancellationRequested(JobEvent):
    detail_type: ClassVar[str] = "Job Cancellation Requested"

    requested_at: str
    status: str = Field(description="The job's status when the cancellation was requested.")


class JobCancelled(JobEvent):
    detail_type: ClassVar[str] = "Job Cancelled"

    completed_at: str


class JobDeletionRequested(JobEvent):
    detail_type: ClassVar[str] = "Job Deletion Requested"

    requested_at: str
    status: str = Field(description="The job's terminal status.")


class JobDeleted(JobEvent):
    detail_type: ClassVar[str] = "Job Deleted"


class TemplateEvent(EventDetail):
    source: ClassVar[str] = SOURCE_TEMPLATES

    template_id: str
    user_id: str


class TemplateCreated(TemplateEvent):
    detail_type: ClassVar[str] = "Template Created"

    version: int
    name: str


class TemplateVersionCreated(TemplateEvent):
    detail_type: ClassVar[str] = "Template Version Created"

    version: int


class TemplateDeleted(TemplateEvent):
    detail_type: ClassVar[str] = "Template Deleted"

    versions_deleted: int


class TemplateForked(TemplateEvent):
    """A new template (``template_id``, version 1, owned by ``user_id``) copied from another's version.

    A fork is announced with this event only (not also ``Template Created``)."""

    detail_type: ClassVar[str] = "Template Forked"

    version: int
    name: str
    forked_from_template_id: str
    forked_from_version: int


class TemplateImported(TemplateEvent):
    """A new template (version 1) created from an exported YAML document (``POST /templates/import``).

    An import is announced with this event only (not also ``Template Created``)."""

    detail_type: ClassVar[str] = "Template Imported"

    version: int
    name: str


ALL_EVENTS: tuple[type[EventDetail], ...] = (
    JobQueued,
    JobStarted,
    JobCompleted,
    JobFailed,
    JobBudgetExceeded,
    JobCancellationRequested,
    JobCancelled,
    JobDeletionRequested,
    JobDeleted,
    TemplateCreated,
    TemplateVersionCreated,
    TemplateDeleted,
    TemplateForked,
    TemplateImported,
)

EVENTS_BY_DETAIL_TYPE: dict[str, type[EventDetail]] = {e.detail_type: e for e in ALL_EVENTS}


def detail_json_schema(model: type[EventDetail]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema["$id"] = f"https://plot-palette.dev/events/{model.__name__}.json"
    schema["x-source"] = model.source
    schema["x-detail-type"] = model.detail_type
    return schema


def write_schemas(directory: str) -> list[str]:
    """Write one ``<DetailType>.json`` schema per event into ``directory``; return the file names."""
    from pathlib import Path

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for model in ALL_EVENTS:
        name = f"{model.__name__}.json"
        (out / name).write_text(json.dumps(detail_json_schema(model), indent=2, sort_keys=True) + "\n")
        names.append(name)
    return names
