"""Seed data: request and response models of the upload and validate routes."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from functions.common.models import DeferredModel

SeedContentType = Literal["application/json", "application/x-ndjson", "text/csv"]
MAX_REPORTED_ERRORS = 20


class UploadRequest(DeferredModel):
    model_config = ConfigDict(extra="forbid")

    filename: str = Field(
        min_length=1,
        max_length=1024,
        description=(
            "The file's name: no path separators or '..'; characters other than letters, digits, "
            "'.', '_' and '-' become '_'; at most 255 characters."
        ),
    )
    content_type: SeedContentType | None = Field(
        default=None, description="Defaults from the name's extension (.json, .jsonl/.ndjson, .csv)."
    )


class UploadForm(DeferredModel):
    url: str
    fields: dict[str, str]


class UploadResponse(DeferredModel):
    upload_url: str = Field(description="Presigned PUT; send the same Content-Type header.")
    s3_key: str
    expires_in: int
    content_type: str
    max_bytes: int
    upload_form: UploadForm = Field(
        description="Presigned POST (browser form upload); the policy enforces the content type and size."
    )


class ValidateRequest(DeferredModel):
    model_config = ConfigDict(extra="forbid")

    s3_key: str = Field(
        min_length=1,
        max_length=1024,
        description=(
            "Your upload's key, the same as an `s3://{bucket}/{key}` URI, or a folder of your uploads "
            "ending in `/`: every file in it, in key order, checked as one stream of records."
        ),
    )
    template_id: str = Field(min_length=1, max_length=256)
    template_version: int | None = Field(default=None, ge=1, le=1_000_000)


class RecordError(DeferredModel):
    record: int | None = Field(
        description="1-based position of the record in the file (in a folder: across its files)."
    )
    line: int | None = Field(
        description="1-based line where the record (or the malformed data) is, in its file."
    )
    message: str


class ValidationSuccess(DeferredModel):
    valid: Literal[True] = True
    format: str = Field(description="json, jsonl or csv; `mixed` for a folder of several formats.")
    records_checked: int


class ValidationFailure(DeferredModel):
    error: str
    valid: Literal[False] = False
    format: str | None = None
    records_checked: int
    missing_fields: list[str] = Field(description="Required seed fields missing from at least one record.")
    errors: list[RecordError] = Field(description=f"The first {MAX_REPORTED_ERRORS} problems found.")
