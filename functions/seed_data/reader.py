"""Streaming seed-data reader shared by seed validation and the generation worker.

``iter_seed_records(chunks, filename_or_content_type)`` turns a stream of bytes (for S3, feed it
``get_object(...)["Body"].iter_chunks()``) into ``SeedRecord(line, index, data)`` one record at a
time, never holding the file in memory: only the record being parsed is buffered (at most
``max_record_bytes``). Formats:

- ``json``: one JSON object, or a JSON array of objects (``[{...}, {...}]``);
- ``jsonl``: one JSON object per line (blank lines are skipped);
- ``csv``: a header row, then one record per row; dotted column names become nested objects
  (``author.name`` → ``{"author": {"name": ...}}``); every cell is a string.

The format comes from the file name's extension (``.json``, ``.jsonl``/``.ndjson``, ``.csv``), else
from the content type (``application/json``, ``application/x-ndjson``/``application/jsonl``,
``text/csv``). Malformed input raises ``SeedDataError`` with the 1-based line it was found on.
``line`` of a record is the line its first character is on; ``index`` is its 0-based position.

Every record, whichever parser produced it, then passes ``check_record``: at most
``MAX_RECORD_DEPTH`` levels of objects and arrays and no integer longer than ``MAX_NUMBER_DIGITS``
digits (a record that breaks either is a ``SeedDataError`` naming its line, never a crash later in
the worker's renderer). A parser that fails on such input (Python's JSON parser recurses, and
refuses integers of more than 4,300 digits) reports the same ``SeedDataError``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

DEFAULT_MAX_RECORD_BYTES = 1024 * 1024
MAX_RECORD_DEPTH = 64
MAX_NUMBER_DIGITS = 100
# An int of at most the first many bits has at most MAX_NUMBER_DIGITS digits; beyond the second, more.
_LONG_INT_BITS = (int(MAX_NUMBER_DIGITS * 3.3219) - 1, int(MAX_NUMBER_DIGITS * 3.3219) + 8)
_DEPTH_MESSAGE = f"Record nests objects and arrays deeper than {MAX_RECORD_DEPTH} levels"
_NUMBER_MESSAGE = f"Record has an integer with more than {MAX_NUMBER_DIGITS} digits"
_BOM = b"\xef\xbb\xbf"
_WHITESPACE = b" \t\r\n"


class SeedFormat(StrEnum):
    JSON = "json"
    JSONL = "jsonl"
    CSV = "csv"


_EXTENSIONS = {
    ".json": SeedFormat.JSON,
    ".jsonl": SeedFormat.JSONL,
    ".ndjson": SeedFormat.JSONL,
    ".csv": SeedFormat.CSV,
}
_CONTENT_TYPES = {
    "application/json": SeedFormat.JSON,
    "application/x-ndjson": SeedFormat.JSONL,
    "application/jsonl": SeedFormat.JSONL,
    "application/x-jsonlines": SeedFormat.JSONL,
    "text/csv": SeedFormat.CSV,
}
CONTENT_TYPE_OF = {
    SeedFormat.JSON: "application/json",
    SeedFormat.JSONL: "application/x-ndjson",
    SeedFormat.CSV: "text/csv",
}


class SeedDataError(ValueError):
    """The seed data cannot be read. ``line`` is 1-based (None when no line applies)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line is not None else message)
        self.message = message
        self.line = line


@dataclass(frozen=True)
class SeedRecord:
    line: int
    index: int
    data: dict[str, Any]


def format_from_name(filename: str | None) -> SeedFormat | None:
    if not filename:
        return None
    dot = filename.rfind(".")
    return _EXTENSIONS.get(filename[dot:].lower()) if dot >= 0 else None


def format_from_content_type(content_type: str | None) -> SeedFormat | None:
    if not content_type:
        return None
    return _CONTENT_TYPES.get(content_type.split(";", 1)[0].strip().lower())


def detect_format(*hints: str | SeedFormat | None) -> SeedFormat:
    """The format named by the first hint that names one (a SeedFormat, file name or content type)."""
    for hint in hints:
        if isinstance(hint, SeedFormat):
            return hint
        found = format_from_name(hint) or format_from_content_type(hint)
        if found is not None:
            return found
    raise SeedDataError("Unsupported seed data format: use a .json, .jsonl or .csv file")


def iter_seed_records(
    chunks: Iterable[bytes],
    filename_or_content_type: str | SeedFormat,
    *,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Iterator[SeedRecord]:
    """Records of a seed file, streamed. Raises ``SeedDataError`` (with a line) on malformed input."""
    fmt = detect_format(filename_or_content_type)
    if fmt is SeedFormat.JSONL:
        records = _iter_jsonl(chunks, max_record_bytes)
    elif fmt is SeedFormat.CSV:
        records = _iter_csv(chunks, max_record_bytes)
    else:
        records = _JsonScanner(max_record_bytes).records(chunks)
    return (check_record(record) for record in records)


def _number_too_long(value: int | Decimal) -> bool:
    if isinstance(value, int):
        # Bits bound the digits without converting (str() of a huge int raises): below 2**332 an
        # int has at most 100 digits, from 2**340 on more; in between, count them.
        bits = value.bit_length()
        return bits > _LONG_INT_BITS[1] or (
            bits > _LONG_INT_BITS[0] and len(str(abs(value))) > MAX_NUMBER_DIGITS
        )
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return value.adjusted() >= MAX_NUMBER_DIGITS  # a parser that reads integers as Decimal
    return False  # a fraction: a float (or Decimal) that is only ever printed, never converted


def check_record(record: SeedRecord) -> SeedRecord:
    """The record, once its depth and numbers are within limits (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(record.data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_RECORD_DEPTH:
                raise SeedDataError(_DEPTH_MESSAGE, record.line)
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(value, int | Decimal) and not isinstance(value, bool) and _number_too_long(value):
            raise SeedDataError(_NUMBER_MESSAGE, record.line)
    return record


# ------------------------------------------------------------------ JSONL


def _without_bom(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The non-empty chunks, minus a leading UTF-8 byte order mark (even one split across chunks)."""
    head = b""
    iterator = iter(chunks)
    for chunk in iterator:
        head += chunk
        if len(head) >= len(_BOM):
            break
    if head.startswith(_BOM):
        head = head[len(_BOM) :]
    if head:
        yield head
    for chunk in iterator:
        if chunk:
            yield chunk


def _iter_lines(chunks: Iterable[bytes], max_line_bytes: int) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line without its newline), streamed from chunks."""
    pending = bytearray()
    line_no = 1
    for chunk in _without_bom(chunks):
        start = 0
        while True:
            newline = chunk.find(b"\n", start)
            if newline < 0:
                pending += chunk[start:]
                if len(pending) > max_line_bytes:
                    raise SeedDataError(f"Line longer than {max_line_bytes} bytes", line_no)
                break
            pending += chunk[start:newline]
            if len(pending) > max_line_bytes:
                raise SeedDataError(f"Line longer than {max_line_bytes} bytes", line_no)
            yield line_no, bytes(pending)
            pending.clear()
            line_no += 1
            start = newline + 1
    if pending:
        yield line_no, bytes(pending)


def _iter_jsonl(chunks: Iterable[bytes], max_record_bytes: int) -> Iterator[SeedRecord]:
    index = 0
    for line_no, raw in _iter_lines(chunks, max_record_bytes):
        if not raw.strip(_WHITESPACE):
            continue
        data = _loads(raw, line_no)
        if not isinstance(data, dict):
            raise SeedDataError(f"Expected a JSON object, found {_json_kind(data)}", line_no)
        yield SeedRecord(line=line_no, index=index, data=data)
        index += 1


# ------------------------------------------------------------------- JSON


def _loads(raw: bytes, first_line: int) -> Any:
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise SeedDataError("Not valid UTF-8", first_line) from None
    except json.JSONDecodeError as error:
        raise SeedDataError(f"Malformed JSON: {error.msg}", first_line + error.lineno - 1) from None
    except RecursionError:
        raise SeedDataError(_DEPTH_MESSAGE, first_line) from None
    except ValueError:  # int() of more than sys.get_int_max_str_digits() digits
        raise SeedDataError(_NUMBER_MESSAGE, first_line) from None


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


_STRUCTURAL = re.compile(rb'[{}\[\]"\n]')
_IN_STRING = re.compile(rb'["\\\n]')


class _JsonScanner:
    """Splits a JSON object or array of objects into one object's bytes at a time.

    It tracks strings and nesting depth only (a compiled regex jumps between the interesting bytes);
    each complete object goes through ``json.loads``, which reports errors inside it.
    """

    # top-level states
    _START, _ARRAY_FIRST, _ARRAY_NEXT, _AFTER_ELEMENT, _DONE = range(5)

    def __init__(self, max_record_bytes: int) -> None:
        self._max = max_record_bytes

    # Exempt from the complexity gate: the hot loop of every seed read keeps its state in locals for
    # speed, and issue 13 item 4 (branch w11-worker) replaces it with a C-speed reader.
    def records(self, chunks: Iterable[bytes]) -> Iterator[SeedRecord]:  # noqa: C901, PLR0915
        state = self._START
        line = 1
        depth = 0  # inside an element when > 0
        in_string = False
        escaped = False
        buffer = bytearray()
        start_line = 1
        index = 0
        single_object = False
        for chunk in _without_bom(chunks):
            pos = 0
            size = len(chunk)
            while pos < size:
                if depth > 0:
                    # Inside an object: jump to the next byte that matters.
                    if escaped:
                        escaped = False
                        buffer += chunk[pos : pos + 1]
                        pos += 1
                        continue
                    match = (_IN_STRING if in_string else _STRUCTURAL).search(chunk, pos)
                    if match is None:
                        buffer += chunk[pos:]
                        pos = size
                    else:
                        end = match.end()
                        char = chunk[match.start()]
                        buffer += chunk[pos:end]
                        pos = end
                        if char == 0x0A:  # \n
                            line += 1
                        elif in_string:
                            if char == 0x5C:  # backslash
                                escaped = True
                            else:
                                in_string = False
                        elif char == 0x22:  # "
                            in_string = True
                        elif char in (0x7B, 0x5B):  # { [
                            depth += 1
                        else:  # } ]
                            depth -= 1
                            if depth == 0:
                                data = _loads(bytes(buffer), start_line)
                                buffer.clear()
                                yield SeedRecord(line=start_line, index=index, data=data)
                                index += 1
                                state = self._DONE if single_object else self._AFTER_ELEMENT
                    if len(buffer) > self._max:
                        raise SeedDataError(f"Record larger than {self._max} bytes", start_line)
                    continue
                char = chunk[pos]
                if char in _WHITESPACE:
                    if char == 0x0A:
                        line += 1
                    pos += 1
                    continue
                if state == self._START:
                    if char == 0x5B:  # [
                        state = self._ARRAY_FIRST
                    elif char == 0x7B:  # {
                        single_object = True
                        depth, start_line = 1, line
                        buffer += b"{"
                    else:
                        raise SeedDataError("Expected a JSON object or an array of objects", line)
                elif state in (self._ARRAY_FIRST, self._ARRAY_NEXT):
                    if char == 0x7B:
                        depth, start_line = 1, line
                        buffer += b"{"
                    elif char == 0x5D and state == self._ARRAY_FIRST:  # ] of an empty array
                        state = self._DONE
                    else:
                        what = "a trailing comma" if char == 0x5D else "an element that is not an object"
                        raise SeedDataError(f"Malformed JSON array: {what}", line)
                elif state == self._AFTER_ELEMENT:
                    if char == 0x2C:  # ,
                        state = self._ARRAY_NEXT
                    elif char == 0x5D:
                        state = self._DONE
                    else:
                        raise SeedDataError("Malformed JSON array: expected ',' or ']'", line)
                else:  # _DONE
                    raise SeedDataError("Unexpected data after the end of the JSON document", line)
                pos += 1
        if depth > 0:
            raise SeedDataError("Unexpected end of file inside a JSON object", start_line)
        if state in (self._ARRAY_FIRST, self._ARRAY_NEXT, self._AFTER_ELEMENT):
            raise SeedDataError("Unexpected end of file: the JSON array is not closed", line)


# -------------------------------------------------------------------- CSV


class _ChunkStream(io.RawIOBase):
    """A readable binary stream over an iterator of chunks (for TextIOWrapper)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(target), len(self._pending))
        target[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


class _LineCounter:
    """Iterates text lines, refusing overlong ones, counting them for error messages."""

    def __init__(self, text: io.TextIOBase, max_line_chars: int) -> None:
        self._text = text
        self._max = max_line_chars
        self.lines = 0

    def __iter__(self) -> _LineCounter:
        return self

    def __next__(self) -> str:
        line = self._text.readline(self._max + 1)
        if not line:
            raise StopIteration
        self.lines += 1
        if len(line) > self._max:
            raise SeedDataError(f"Line longer than {self._max} characters", self.lines)
        return line


def _iter_csv(chunks: Iterable[bytes], max_record_bytes: int) -> Iterator[SeedRecord]:
    text = io.TextIOWrapper(io.BufferedReader(_ChunkStream(chunks)), encoding="utf-8-sig", newline="")
    counter = _LineCounter(text, max_record_bytes)
    reader = csv.reader(counter, strict=True)
    header: list[list[str]] | None = None
    index = 0
    last_line = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError:
            raise SeedDataError("Not valid UTF-8", counter.lines + 1) from None
        except csv.Error as error:
            raise SeedDataError(f"Malformed CSV: {error}", counter.lines) from None
        first_line, last_line = last_line + 1, counter.lines
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if header is None:
            header = _csv_header(row, first_line)
            continue
        if len(row) != len(header):
            raise SeedDataError(f"Expected {len(header)} columns, found {len(row)}", first_line)
        yield SeedRecord(line=first_line, index=index, data=_nest(header, row))
        index += 1


def _csv_header(row: list[str], line: int) -> list[list[str]]:
    paths: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()
    for column, name in enumerate(row, start=1):
        parts = name.strip().split(".")
        if any(not part for part in parts):
            raise SeedDataError(f"Header column {column} is not a valid field name: {name!r}", line)
        key = tuple(parts)
        if key in seen:
            raise SeedDataError(f"Header column {column} repeats the field {name.strip()!r}", line)
        # A field cannot be both a value and an object ("author" and "author.name").
        for other in seen:
            shorter, longer = (key, other) if len(key) < len(other) else (other, key)
            if longer[: len(shorter)] == shorter:
                raise SeedDataError(
                    f"Header columns {'.'.join(shorter)!r} and {'.'.join(longer)!r} conflict", line
                )
        seen.add(key)
        paths.append(parts)
    return paths


def _nest(header: list[list[str]], row: list[str]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for parts, value in zip(header, row, strict=True):
        target = record
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    return record
