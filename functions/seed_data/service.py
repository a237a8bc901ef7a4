"""Seed-data rules: where uploads go and whether a file satisfies a template."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from functions.common.errors import BadRequestError, ForbiddenError, NotFoundError
from functions.common.observability import logger
from functions.common.storage import (
    SeedFolderTooLargeError,
    SeedPathError,
    is_seed_folder,
    seed_location,
    seed_prefix,
)
from functions.seed_data.models import (
    FILENAME_PATTERN,
    MAX_FILENAME_CHARS,
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

_FILENAME = re.compile(FILENAME_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ud800-\udfff]")
_SEPARATOR = re.compile(r"[/\\\u2044\u2215\uff0f\uff3c]")


def seed_filename(filename: str) -> str:
    """The name as stored (NFC), or a 400 saying which rule it breaks.

    Names are kept, never rewritten: two different names never collapse into one key (``文件.json``
    and ``数据.json`` used to both become ``__.json`` and overwrite each other). The rule is
    ``FILENAME_PATTERN``, which the OpenAPI document states; the checks before it only give the
    common mistakes a clearer message.
    """
    name = unicodedata.normalize("NFC", filename)
    if not name.strip():
        raise BadRequestError("The filename is empty")
    if _SEPARATOR.search(name) or ".." in name:
        raise BadRequestError("The filename must not contain path separators or '..'")
    if _CONTROL.search(name):
        raise BadRequestError("The filename must not contain control or invisible characters")
    if name.startswith("."):
        raise BadRequestError("The filename must not start with '.'")
    if len(name) > MAX_FILENAME_CHARS:
        raise BadRequestError(f"The filename is longer than {MAX_FILENAME_CHARS} characters")
    if not _FILENAME.fullmatch(name):
        raise BadRequestError(
            "The filename must not start or end with a space, nor contain any of "
            '/ \\ : * ? " < > | # % { } ^ ~ [ ] `'
        )
    return name


def _too_large(size: int, limit: int) -> ValidationFailure:
    return ValidationFailure(
        error=f"The seed file is {size} bytes; the upload limit is {limit} bytes",
        records_checked=0,
        missing_fields=[],
        errors=[],
    )


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
        name = seed_filename(request.filename)
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
        """Check every record against the template: one file, or every file of a folder in key order
        as one stream (records numbered across the files, lines within each)."""
        try:
            key = seed_location(request.s3_key, caller, self._store.bucket)
        except SeedPathError:
            raise ForbiddenError("Forbidden") from None
        template = self._templates.get_version(request.template_id, request.template_version)
        if template is None:
            raise NotFoundError("Template not found")
        if not template.is_readable_by(caller):
            raise ForbiddenError("Forbidden")
        keys = self._files(key)
        check = _Check(template.schema_requirements, folder=is_seed_folder(key))
        for file_key in keys:
            seed = self._store.open(file_key)
            if seed is None:
                raise NotFoundError("Seed data not found")
            if seed.size > self._max_bytes:
                # A presigned PUT cannot bound the size it accepts, so the object's own size decides.
                seed.close()
                return _too_large(seed.size, self._max_bytes)
            try:
                failure = check.file(seed.chunks, file_key, seed.content_type, seed.size)
            finally:
                seed.close()
            if failure is not None:
                return failure
        return check.result(key)

    def _files(self, key: str) -> list[str]:
        if not is_seed_folder(key):
            return [key]
        try:
            keys = self._store.list_keys(key)
        except SeedFolderTooLargeError as error:
            raise BadRequestError(str(error)) from None
        if not keys:
            raise NotFoundError("Seed data not found")
        return keys


class _Check:
    """Records checked so far, across the files of one validation."""

    def __init__(self, requirements: list[str], *, folder: bool) -> None:
        self._requirements = requirements
        self._folder = folder
        self.missing_fields: set[str] = set()
        self.errors: list[RecordError] = []
        self.checked = 0
        self.invalid = 0
        self.size = 0
        self.format: str | None = None

    def file(self, chunks: Any, key: str, content_type: str | None, size: int) -> ValidationFailure | None:
        """Check one file's records; a failure that ends the validation (unreadable, malformed)."""
        self.size += size
        try:
            fmt = detect_format(key, content_type)
        except SeedDataError as error:
            return self._failure(error.message)
        self.format = fmt.value if self.format in (None, fmt.value) else "mixed"
        try:
            for record in iter_seed_records(chunks, fmt):
                self._record(record.data, record.line)
        except SeedDataError as error:
            where = f" on line {error.line}" if error.line is not None else ""
            where += f" of {key}" if self._folder else ""
            self.errors = self.errors[: MAX_REPORTED_ERRORS - 1]
            self.errors.append(RecordError(record=self.checked + 1, line=error.line, message=error.message))
            logger.info("Seed data malformed", extra={"s3_key": key, "line": error.line})
            return self._failure(f"Malformed {fmt.value.upper()}{where}: {error.message}")
        return None

    def _record(self, data: dict[str, Any], line: int) -> None:
        self.checked += 1
        missing = [path for path in self._requirements if not has_path(data, path)]
        if not missing:
            return
        self.invalid += 1
        self.missing_fields.update(missing)
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(
                RecordError(
                    record=self.checked, line=line, message="Missing required field(s): " + ", ".join(missing)
                )
            )

    def _failure(self, message: str) -> ValidationFailure:
        return ValidationFailure(
            error=message,
            format=self.format,
            records_checked=self.checked,
            missing_fields=sorted(self.missing_fields),
            errors=self.errors,
        )

    def result(self, key: str) -> ValidationSuccess | ValidationFailure:
        if self.checked == 0:
            self.errors = []
            return self._failure(
                "The seed data file is empty" if self.size == 0 else "The seed data file has no records"
            )
        logger.info(
            "Seed data checked", extra={"s3_key": key, "records": self.checked, "invalid": self.invalid}
        )
        if self.invalid:
            return self._failure(f"{self.invalid} of {self.checked} records lack fields the template reads")
        return ValidationSuccess(format=self.format or "", records_checked=self.checked)
