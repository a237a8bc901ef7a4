"""Seed data: request and response models of the upload and validate routes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from functions.common.json_types import json_int
from functions.common.models import DeferredModel

SeedContentType = Literal["application/json", "application/x-ndjson", "text/csv"]
MAX_REPORTED_ERRORS = 20
MAX_FILENAME_CHARS = 255

# Characters a seed file name may not hold: ASCII and Unicode controls, invisible and bidirectional
# formatting characters (which can disguise a name), slash look-alikes, the characters S3 advises
# against in keys, and one (U+1FEF) that NFC turns into a backquote. (Lone surrogates, which no
# UTF-8 key can hold, are refused by the service too; a pattern cannot name them portably.)
FILENAME_EXCLUDED = (
    r'\x00-\x1f\x7f-\x9f/\\:*?"<>|#%{}^~\[\]`\u1fef\u200b-\u200f\u2028-\u202e\u2044'
    r"\u2060-\u206f\u2215\ufeff\uff0f\uff3c"
)
# The whole rule as one pattern (ECMA and Python syntax alike, so the OpenAPI document states it
# exactly): 1..255 allowed characters, not starting with '.' or a space, not ending with a space,
# without "..". Letters of every script are kept as they are (NFC).
FILENAME_PATTERN = (
    rf"^(?![ .])(?![\s\S]*\.\.)[^{FILENAME_EXCLUDED}]{{0,{MAX_FILENAME_CHARS - 1}}}"
    rf"[^{FILENAME_EXCLUDED} ](?![\s\S])"
)


def _any_case(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" for c in word)


def _ends_with(*extensions: str) -> dict[str, str]:
    return {"pattern": r"\.(" + "|".join(_any_case(e) for e in extensions) + r")(?![\s\S])"}


# The format rule, for the OpenAPI document: without content_type the name must end in a known
# extension; with it, a known extension must agree with it (the service enforces the same).
_FORMAT_RULE: dict[str, Any] = {
    "anyOf": [
        {
            "properties": {
                "content_type": {"type": "null"},
                "filename": _ends_with("json", "jsonl", "ndjson", "csv"),
            }
        },
        {
            "required": ["content_type"],
            "properties": {
                "content_type": {"const": "application/json"},
                "filename": {"not": _ends_with("jsonl", "ndjson", "csv")},
            },
        },
        {
            "required": ["content_type"],
            "properties": {
                "content_type": {"const": "application/x-ndjson"},
                "filename": {"not": _ends_with("json", "csv")},
            },
        },
        {
            "required": ["content_type"],
            "properties": {
                "content_type": {"const": "text/csv"},
                "filename": {"not": _ends_with("json", "jsonl", "ndjson")},
            },
        },
    ]
}


class UploadRequest(DeferredModel):
    # The name rules are checked by the service (clear messages); the schema states them exactly.
    model_config = ConfigDict(extra="forbid", json_schema_extra=_FORMAT_RULE)

    filename: str = Field(
        min_length=1,
        max_length=1024,
        json_schema_extra={"pattern": FILENAME_PATTERN, "maxLength": MAX_FILENAME_CHARS},
        description=(
            "The file's name, kept as given (Unicode NFC): letters of any script, digits, spaces and "
            'punctuation except / \\ : * ? " < > | # % { } ^ ~ [ ] ` and control or invisible '
            "characters; not starting with '.' or a space, not ending with a space, no '..'; at most "
            "255 characters. The same name again replaces your earlier upload of that name; two "
            "different names never share a key."
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
    template_version: json_int(1, 1_000_000) | None = None  # type: ignore[valid-type]


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
