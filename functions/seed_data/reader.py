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

Speed (``benchmarks/seed_reader.py``): the parsing is the stdlib's C code and the Python left is a
few calls per record or per buffer. A JSON array written on one line is parsed one buffer at a
time by one C call (``_JsonScanner._batch``), otherwise element by element; a CSV row becomes its
record in one call of a function compiled from the header (``_builder``).

Every record, whichever parser produced it, then passes ``check_record``: at most
``MAX_RECORD_DEPTH`` levels of objects and arrays and no integer longer than ``MAX_NUMBER_DIGITS``
digits (a record that breaks either is a ``SeedDataError`` naming its line, never a crash later in
the worker's renderer). A parser that fails on such input (Python's JSON parser recurses, and
refuses integers of more than 4,300 digits) reports the same ``SeedDataError``.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple, Protocol, cast

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


class SeedRecord(NamedTuple):
    """A record and where it is: immutable, and a tuple for speed (built once per record)."""

    line: int
    index: int  # type: ignore[assignment]  # the field hides tuple.index, which no caller needs
    data: dict[str, Any]


# ``_record((line, index, data))``: a SeedRecord without the Python frame of ``SeedRecord.__new__``.
_record: Callable[[tuple[int, int, dict[str, Any]]], SeedRecord]
_record = functools.partial(tuple.__new__, SeedRecord)


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


def _decode(decoder: codecs.IncrementalDecoder, chunk: bytes, final: bool, line: int) -> str:
    """A chunk's text; invalid UTF-8 names the line it is on (``line``: the chunk's first)."""
    try:
        return decoder.decode(chunk, final=final)
    except UnicodeDecodeError as error:
        where = line + chunk[: max(0, error.start)].count(b"\n")
        raise SeedDataError("Not valid UTF-8", where) from None


def _split_lf(text: str) -> list[str]:
    return text.split("\n")


def _split_csv(text: str) -> list[str]:
    """Lines with their ends, split where the csv module expects (``\n``, ``\r\n``, ``\r``), in
    C; the last item is the unfinished line ("" when the text ends a line; a final ``\r`` waits
    for a possible ``\n``)."""
    lines = io.StringIO(text, newline="").readlines()
    if not lines or lines[-1].endswith("\n"):
        lines.append("")
    return lines


def _text_lines(
    chunks: Iterable[bytes], max_line_chars: int, split: Callable[[str], list[str]] = _split_lf
) -> Iterator[str]:
    """The text's lines (``split`` decides where lines end and whether they keep their ends),
    decoded per chunk (a leading BOM dropped) and split in C; a line longer than
    ``max_line_chars`` is refused before more of it is buffered."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    pending = ""
    line = 1
    for chunk in chunks:
        lines = split(pending + _decode(decoder, chunk, False, line))
        pending = lines.pop()
        if len(pending) > max_line_chars:
            raise SeedDataError(f"Line longer than {max_line_chars} bytes", line + len(lines))
        if lines and max(map(len, lines)) > max_line_chars:
            longest = next(i for i, text in enumerate(lines) if len(text) > max_line_chars)
            raise SeedDataError(f"Line longer than {max_line_chars} bytes", line + longest)
        line += len(lines)
        yield from lines
    pending += _decode(decoder, b"", True, line)
    if pending:
        yield pending


def _iter_jsonl(chunks: Iterable[bytes], max_record_bytes: int) -> Iterator[SeedRecord]:
    """One object per line. The stdlib's C scanner parses each line in place; anything unusual
    (leading space, a blank line, trailing text, an error) goes through ``json.loads`` for its
    exact verdict and message."""
    index = 0
    scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # the C scanner, without json.loads' wrapping
    for line_no, line in enumerate(_text_lines(chunks, max_record_bytes), start=1):
        try:
            data, end = scan(line, 0)
            clean = end == len(line)
        except (StopIteration, ValueError, RecursionError):  # json.loads names the problem below
            clean = False
        if not clean:
            if not line.strip(" \t\r\n"):
                continue
            data = _loads(line, line_no)
        if not isinstance(data, dict):
            raise SeedDataError(f"Expected a JSON object, found {_json_kind(data)}", line_no)
        yield _record((line_no, index, data))
        index += 1


# ------------------------------------------------------------------- JSON


def _loads(raw: str, first_line: int) -> Any:
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


_SPACE = re.compile(r"[ \t\r\n]*")
_NEXT = re.compile(r"[ \t\r\n]*,[ \t\r\n]*(?=\{)")
# How many characters a refill adds at least (or as many as the record so far: linear overall).
_REFILL_CHARS = 64 * 1024


class _JsonScanner:
    """Splits a JSON object or an array of objects into records, parsed by the stdlib's C parser.

    The framing (``[``, ``,``, ``]``, whitespace) is read here; each element is parsed in place by
    the C scanner behind ``json.loads`` (``JSONDecoder.scan_once``), straight from the decoded
    text buffer, so the cost per byte is that of ``json.loads``. The buffer holds the current
    chunk and at most one record (``max_record_bytes``). An element cut by a chunk boundary fails
    to parse at the end of the buffer (or inside an unterminated string): more text is read and it
    is parsed again; at the end of the file the same failure is the file's error. Lines are counted
    with ``str.count`` over the text consumed.
    """

    # top-level states
    _START, _ARRAY_FIRST, _ARRAY_NEXT, _AFTER_ELEMENT, _DONE = range(5)

    def __init__(self, max_record_bytes: int) -> None:
        self._max = max_record_bytes
        self._scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]

    def records(self, chunks: Iterable[bytes]) -> Iterator[SeedRecord]:
        self._chunks = iter(chunks)
        self._utf8 = codecs.getincrementaldecoder("utf-8-sig")()
        self._text = ""
        self._pos = 0
        self._line = 1  # the line of ``_text[_pos]``
        self._eof = False
        self._batching = True
        state = self._START
        index = 0
        while True:
            if not self._skip_space():
                break
            char = self._text[self._pos]
            if state == self._AFTER_ELEMENT:
                state = self._after_element(char)
                self._pos += 1
            elif state == self._START and char == "[":
                state = self._ARRAY_FIRST
                self._pos += 1
            elif state == self._ARRAY_FIRST and char == "]":
                state = self._DONE
                self._pos += 1
            elif char == "{" and state != self._DONE:
                line, data = self._element()
                yield SeedRecord(line=line, index=index, data=data)
                index += 1
                if state == self._START:
                    state = self._DONE
                    continue
                burst = self._burst(index)
                index += len(burst)
                yield from burst
                state = self._AFTER_ELEMENT
            else:
                raise SeedDataError(self._unexpected(state, char), self._line)
        if state in (self._ARRAY_FIRST, self._ARRAY_NEXT, self._AFTER_ELEMENT):
            raise SeedDataError("Unexpected end of file: the JSON array is not closed", self._line)

    def _burst(self, index: int) -> list[SeedRecord]:
        """The elements that follow in the buffer, comma after comma, parsed back to back while
        each is whole (the common case: a few C calls per record, in a plain loop rather than a
        generator resumed per record; the list holds at most one buffer's records). Anything else
        (the buffer's end, an error, the array's end) is left to the careful path, at the last
        comma. Line ends are counted only in text that has one (``next_lf``)."""
        records = self._batch(index)
        if records:
            return records
        text, pos, line = self._text, self._pos, self._line
        scan, next_element, find, count, limit = self._scan, _NEXT.match, text.find, text.count, self._max
        next_lf = find("\n", pos) % (len(text) + 1)  # -1 (none) becomes len(text)
        append = records.append
        while True:
            if text.startswith(",{", pos):  # the usual separator, without the regular expression
                start = pos + 1
            else:
                found = next_element(text, pos)
                if found is None:
                    break
                start = found.end()
            try:
                data, end = scan(text, start)
            except (StopIteration, ValueError, RecursionError):  # the careful path reports it
                break
            if end - start > limit:
                break
            record_line = line
            if end > next_lf:  # a line ends between the last record and this one's end
                record_line = line + count("\n", pos, start)
                line = record_line + count("\n", start, end)
                next_lf = find("\n", end) % (len(text) + 1)
            append(_record((record_line, index, data)))
            index += 1
            pos = end
        self._pos, self._line = pos, line
        return records

    def _batch(self, index: int) -> list[SeedRecord]:
        """The whole elements of a buffer on one line (``json.dumps`` of a list), parsed by one
        C call as an array: ``[`` + the elements up to the buffer's last ``},`` + ``]``. Such a
        cut either ends an element or makes the array invalid (it leaves an object open), so a
        successful parse that consumes the slice exactly is those elements; they are all on
        the cursor's line. Anything else is left to the per-element path; after a failed guess
        (a ``},`` inside the last element) the file is read per element from then on. After a
        batch the next chunk is read in, so the element cut by the buffer's end is whole."""
        text, pos = self._text, self._pos
        found = _NEXT.match(text, pos) if self._batching else None
        start, cut = (found.end() if found else len(text)), text.rfind("},", pos) + 1
        if not start < cut <= start + self._max or text.find("\n", pos, cut) >= 0:
            return []
        array = "[" + text[start:cut] + "]"
        try:
            elements, end = self._scan(array, 0)
        except (StopIteration, ValueError, RecursionError):
            elements, end = [], 0
        if end != len(array) or not set(map(type, elements)) <= {dict}:
            self._batching = False
            return []
        self._pos = cut
        if not self._eof:  # the next chunk now, so that the element cut by this one parses at once
            self._refill(_REFILL_CHARS)
        return list(map(_record, zip(itertools.repeat(self._line), itertools.count(index), elements)))

    def _after_element(self, char: str) -> int:
        if char == ",":
            return self._ARRAY_NEXT
        if char == "]":
            return self._DONE
        raise SeedDataError("Malformed JSON array: expected ',' or ']'", self._line)

    def _unexpected(self, state: int, char: str) -> str:
        if state == self._START:
            return "Expected a JSON object or an array of objects"
        if state == self._DONE:
            return "Unexpected data after the end of the JSON document"
        what = "a trailing comma" if char == "]" else "an element that is not an object"
        return f"Malformed JSON array: {what}"

    # ----------------------------------------------------------- buffer

    def _refill(self, at_least: int) -> bool:
        """Append at least ``at_least`` characters (fewer at the end of the file); False if none."""
        parts: list[str] = []
        added = 0
        while added < at_least and not self._eof:
            chunk = next(self._chunks, None)
            self._eof = chunk is None
            try:
                text = self._utf8.decode(chunk or b"", final=self._eof)
            except UnicodeDecodeError:
                raise SeedDataError("Not valid UTF-8", self._line) from None
            parts.append(text)
            added += len(text)
        if not added:
            return False
        self._text = self._text[self._pos :] + "".join(parts)
        self._pos = 0
        return True

    def _skip_space(self) -> bool:
        """Move to the next non-space character; False at the end of the file."""
        while True:
            end = _SPACE.match(self._text, self._pos).end()  # type: ignore[union-attr]
            self._line += self._text.count("\n", self._pos, end)
            self._pos = end
            if end < len(self._text):
                return True
            if not self._refill(1):
                return False

    def _element(self) -> tuple[int, Any]:
        """Parse the object at the cursor (reading more text as needed)."""
        start_line = self._line
        while True:
            start = self._pos
            try:
                try:
                    data, end = self._scan(self._text, start)
                except StopIteration as stop:  # what raw_decode does: the value names the position
                    raise json.JSONDecodeError("Expecting value", self._text, stop.value) from None
            except json.JSONDecodeError as error:
                if len(self._text) - start > self._max:
                    raise SeedDataError(f"Record larger than {self._max} bytes", start_line) from None
                if not self._cut_off(error) or not self._refill(max(_REFILL_CHARS, len(self._text) - start)):
                    raise self._parse_error(error, start, start_line) from None
                continue
            except RecursionError:
                raise SeedDataError(_DEPTH_MESSAGE, start_line) from None
            except ValueError:  # int() of more than sys.get_int_max_str_digits() digits
                raise SeedDataError(_NUMBER_MESSAGE, start_line) from None
            if end - start > self._max:
                raise SeedDataError(f"Record larger than {self._max} bytes", start_line)
            self._line += self._text.count("\n", start, end)
            self._pos = end
            return start_line, data

    def _cut_off(self, error: json.JSONDecodeError) -> bool:
        """Whether the element may only be cut by the end of the buffer (then: read more)."""
        return error.msg.startswith("Unterminated string") or error.pos >= len(self._text) - 8

    def _parse_error(self, error: json.JSONDecodeError, start: int, start_line: int) -> SeedDataError:
        if self._cut_off(error) and not self._text[error.pos :].strip():
            return SeedDataError("Unexpected end of file inside a JSON object", start_line)
        return SeedDataError(
            f"Malformed JSON: {error.msg}", start_line + self._text.count("\n", start, error.pos)
        )


# -------------------------------------------------------------------- CSV


def _iter_csv(chunks: Iterable[bytes], max_record_bytes: int) -> Iterator[SeedRecord]:
    """Rows of the C ``csv`` reader, fed one physical line at a time so that ``reader.line_num``
    counts lines even inside quoted newlines: a record's line is the one after the previous
    record's last line. Each row becomes its record in one call of the header's builder."""
    reader = csv.reader(_text_lines(chunks, max_record_bytes, _split_csv), strict=True)
    try:
        build, last_line = _read_header(reader)
        if build is not None:
            yield from _csv_records(reader, build, last_line)
    except csv.Error as error:
        raise SeedDataError(f"Malformed CSV: {error}", reader.line_num) from None


def _read_header(reader: Any) -> tuple[_Builder | None, int]:
    """The builder made from the first non-blank row (None: no row), and the line it ended on."""
    last_line = 0
    for row in reader:
        first_line, last_line = last_line + 1, reader.line_num
        if not _blank(row):
            return _builder(_csv_header(row, first_line)), last_line
    return None, last_line


def _csv_records(reader: Any, build: _Builder, last_line: int) -> Iterator[SeedRecord]:
    index = 0
    for row in reader:
        first_line, last_line = last_line + 1, reader.line_num
        try:
            data = build(row)
        except ValueError:  # the builder unpacks the row: it has another number of cells
            if _blank(row):
                continue
            raise SeedDataError(f"Expected {build.columns} columns, found {len(row)}", first_line) from None
        yield _record((first_line, index, data))
        index += 1


def _blank(row: list[str]) -> bool:
    return not row or (len(row) == 1 and not row[0].strip())


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


class _Builder(Protocol):
    columns: int

    def __call__(self, row: list[str], /) -> dict[str, Any]: ...


def _builder(header: list[list[str]]) -> _Builder:
    """The function from a row to its record, compiled once per file from the header: it unpacks
    the row into locals (a row of another width raises ``ValueError``) and returns one nested
    dict display, e.g. for ``id,author.name,author.bio``::

        def build(row):
            c0, c1, c2, = row
            return {'id': c0, 'author': {'name': c1, 'bio': c2}}

    so a record costs one call and no per-cell Python, flat or dotted header alike. The field
    names enter the source only as ``repr()`` string literals, never as code."""
    tree: dict[str, Any] = {}
    for column, parts in enumerate(header):
        target = tree
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = column
    cells = "".join(f"c{column}, " for column in range(len(header)))
    source = f"def build(row):\n    {cells}= row\n    return {_display(tree)}\n"
    namespace: dict[str, Any] = {}
    exec(compile(source, "<csv header>", "exec"), namespace)  # noqa: S102  # names are repr() literals
    build = namespace["build"]
    build.columns = len(header)
    return cast(_Builder, build)


def _display(node: dict[str, Any]) -> str:
    """The dict display of a header subtree: a leaf is its column's local (``c3``)."""
    items = (
        f"{name!r}: {f'c{value}' if isinstance(value, int) else _display(value)}"
        for name, value in node.items()
    )
    return "{" + ", ".join(items) + "}"
