"""Seed-data rules: where uploads go and whether a file satisfies a template."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from functions.common.errors import BadRequestError, ForbiddenError, NotFoundError
from functions.common.observability import logger
from functions.common.storage import seed_prefix
from functions.seed_data.models import (
    MAX_REPORTED_ERRORS,
    RecordError,
    UploadForm,
    UploadRequest,
    UploadResponse,
    ValidateRequest,
    ValidationFailure,
    ValidationSuccess,
)
from functions.seed_data.reader import (
    CONTENT_TYPE_OF,
    SeedDataError,
    detect_format,
    format_from_content_type,
    format_from_name,
    iter_seed_records,
)
from functions.seed_data.repository import SeedStore
from functions.templates.repository import TemplateRepository

MAX_FILENAME_CHARS = 255
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def sanitize_filename(filename: str) -> str:
    """A safe S3 name segment, or a 400: no separators or '..', unsafe characters become '_'."""
    name = unicodedata.normalize("NFKC", filename).strip()
    if not name:
        raise BadRequestError("The filename is empty")
    if "/" in name or "\\" in name or ".." in name:
        raise BadRequestError("The filename must not contain path separators or '..'")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise BadRequestError("The filename must not contain control characters")
    safe = _UNSAFE.sub("_", name)
    if safe.startswith("."):
        raise BadRequestError("The filename must not start with '.'")
    if len(safe) > MAX_FILENAME_CHARS:
        raise BadRequestError(f"The filename is longer than {MAX_FILENAME_CHARS} characters")
    return safe


def has_path(record: dict[str, Any], path: str) -> bool:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return True


class SeedDataService:
    def __init__(
        self,
        store: SeedStore,
        templates: TemplateRepository,
        *,
        upload_max_bytes: int,
        upload_expires_seconds: int,
    ) -> None:
        self._store = store
        self._templates = templates
        self._max_bytes = upload_max_bytes
        self._expires = upload_expires_seconds

    def upload(self, caller: str, request: UploadRequest) -> UploadResponse:
        name = sanitize_filename(request.filename)
        by_name = format_from_name(name)
        content_type: str
        if request.content_type is not None:
            by_type = format_from_content_type(request.content_type)
            if by_name is not None and by_name is not by_type:
                raise BadRequestError(
                    f"The file extension does not match the content type {request.content_type}"
                )
            content_type = request.content_type
        elif by_name is not None:
            content_type = CONTENT_TYPE_OF[by_name]
        else:
            raise BadRequestError("Name the file .json, .jsonl or .csv, or give its content_type")
        key = seed_prefix(caller) + name
        post = self._store.presigned_post(key, content_type, self._max_bytes, self._expires)
        return UploadResponse(
            upload_url=self._store.presigned_put(key, content_type, self._expires),
            s3_key=key,
            expires_in=self._expires,
            content_type=content_type,
            max_bytes=self._max_bytes,
            upload_form=UploadForm(url=post["url"], fields=post["fields"]),
        )

    def validate(self, caller: str, request: ValidateRequest) -> ValidationSuccess | ValidationFailure:
        key = request.s3_key
        prefix = seed_prefix(caller)
        rest = key[len(prefix) :] if key.startswith(prefix) else ""
        if not rest or ".." in rest.split("/") or "//" in key:
            raise ForbiddenError("Forbidden")
        template = self._templates.get_version(request.template_id, request.template_version)
        if template is None:
            raise NotFoundError("Template not found")
        if not template.is_readable_by(caller):
            raise ForbiddenError("Forbidden")
        seed = self._store.open(key)
        if seed is None:
            raise NotFoundError("Seed data not found")
        try:
            return self._check(seed.chunks, key, seed.content_type, seed.size, template.schema_requirements)
        finally:
            seed.close()

    @staticmethod
    def _check(
        chunks: Any, key: str, content_type: str | None, size: int, requirements: list[str]
    ) -> ValidationSuccess | ValidationFailure:
        try:
            fmt = detect_format(key, content_type)
        except SeedDataError as error:
            return ValidationFailure(error=error.message, records_checked=0, missing_fields=[], errors=[])
        missing_fields: set[str] = set()
        errors: list[RecordError] = []
        checked = 0
        invalid = 0
        try:
            for record in iter_seed_records(chunks, fmt):
                checked += 1
                missing = [path for path in requirements if not has_path(record.data, path)]
                if missing:
                    invalid += 1
                    missing_fields.update(missing)
                    if len(errors) < MAX_REPORTED_ERRORS:
                        errors.append(
                            RecordError(
                                record=record.index + 1,
                                line=record.line,
                                message="Missing required field(s): " + ", ".join(missing),
                            )
                        )
        except SeedDataError as error:
            where = f" on line {error.line}" if error.line is not None else ""
            errors = errors[: MAX_REPORTED_ERRORS - 1]
            errors.append(RecordError(record=checked + 1, line=error.line, message=error.message))
            logger.info("Seed data malformed", extra={"s3_key": key, "line": error.line})
            return ValidationFailure(
                error=f"Malformed {fmt.value.upper()}{where}: {error.message}",
                format=fmt.value,
                records_checked=checked,
                missing_fields=sorted(missing_fields),
                errors=errors,
            )
        if checked == 0:
            message = "The seed data file is empty" if size == 0 else "The seed data file has no records"
            return ValidationFailure(
                error=message, format=fmt.value, records_checked=0, missing_fields=[], errors=[]
            )
        logger.info("Seed data checked", extra={"s3_key": key, "records": checked, "invalid": invalid})
        if invalid:
            return ValidationFailure(
                error=f"{invalid} of {checked} records lack fields the template reads",
                format=fmt.value,
                records_checked=checked,
                missing_fields=sorted(missing_fields),
                errors=errors,
            )
        return ValidationSuccess(format=fmt.value, records_checked=checked)
