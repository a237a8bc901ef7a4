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
few calls per batch, or per record where the layout needs it; records reach the caller a batch at
a time through ``itertools.chain`` (no Python frame per record). A batch is about 32 KB of text
(``_BATCH_CHARS``; S3's 256 KB reads are cut in pieces) and is freed before the next is parsed, so
that its text and objects stay in the CPU's cache and few of them live long enough for the garbage
collector to walk them again and again, as it does the whole file's when ``json.loads`` reads it.
A JSON array written on one line is parsed a batch at a time by one C call
(``_JsonScanner._batch``), one written an element per line too (``_JsonScanner._line_batch``),
any other layout element by element; JSONL is parsed a line at a time by the C scanner; a CSV
chunk without quotes becomes its records in one call of a function compiled from the header
(``_builder``), other chunks row by row.

Every record, whichever parser produced it, is held to the limits of ``check_record``: at most
``MAX_RECORD_DEPTH`` levels of objects and arrays and no integer longer than ``MAX_NUMBER_DIGITS``
digits (a record that breaks either is a ``SeedDataError`` naming its line, never a crash later in
the worker's renderer). For JSON a batch is first checked as a whole in C (``_within_limits``:
the parsed values level by level, integers only where the text has a long run of digits); only a
batch that may break a limit is walked record by record, so the error names the same record and
line, after the records before it. A CSV record is as deep as its header and holds only strings,
so only the first is checked. A parser that fails on such input (Python's JSON parser recurses, and
refuses integers of more than 4,300 digits) reports the same ``SeedDataError``.
"""

from __future__ import annotations

import codecs
import csv
import functools
import gc
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
_new_tuple = tuple.__new__


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
        batches = _jsonl_batches(_pieces(chunks, _PIECE_BYTES), max_record_bytes)
    elif fmt is SeedFormat.CSV:
        batches = _csv_batches(_pieces(chunks, _PIECE_BYTES), max_record_bytes)
    else:
        batches = _JsonScanner(max_record_bytes).batches(chunks)
    # Each parser yields its records a batch at a time (a list per buffer, already checked); the
    # records then reach the caller through C iteration, without a Python frame per record.
    return itertools.chain.from_iterable(batches)


# A batch's text at most (JSONL and CSV: bytes decoded at a time; JSON: characters parsed by one C
# call): its text and records then stay in the CPU's cache while they are parsed, checked and
# handed on (benchmarks/seed_reader.py: every format reads faster in batches of 32-64 KB than of
# the validator's 256 KB reads, and slower still of 1 MB).
_PIECE_BYTES = _BATCH_CHARS = 32 * 1024
# ... or for JSON, when that is more, this many records (of the last batch's mean size): for
# large records what counts is the few Python calls per batch, not the cache.
_BATCH_RECORDS = 64


def _pieces(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """The chunks, each cut in pieces of at most ``size`` bytes (UTF-8 decoding is incremental,
    so a cut inside a character is fine)."""
    for chunk in chunks:
        if len(chunk) <= size:
            yield chunk
        else:
            for start in range(0, len(chunk), size):
                yield chunk[start : start + size]


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


# A run of more than MAX_NUMBER_DIGITS digits covers at least this many consecutive points of a
# sample taken every _DIGIT_STRIDE characters (any n consecutive positions hold at least
# n // stride multiples of the stride).
_DIGIT_STRIDE = 20
_DIGIT_RUN = b"1" * ((MAX_NUMBER_DIGITS + 1) // _DIGIT_STRIDE)
_DIGIT_MASK = bytes(0x31 if 0x30 <= byte <= 0x39 else 0x30 for byte in range(256))  # digit -> "1"


def _may_hold_long_numbers(text: str) -> bool:
    """False when ``text`` certainly has no run of more than ``MAX_NUMBER_DIGITS`` ASCII digits, so
    no integer that long: a 1-in-20 sample, in C (UTF-8 keeps ASCII digits single bytes, and a
    non-ASCII character only adds non-digit bytes)."""
    return _DIGIT_RUN in text[::_DIGIT_STRIDE].encode().translate(_DIGIT_MASK)


def _within_limits(values: list[Any], text: str | None) -> bool:
    """True when none of the parsed ``values`` (records; ``text``: the JSON they were parsed from,
    or None) nests deeper than ``MAX_RECORD_DEPTH`` or holds an integer of more than
    ``MAX_NUMBER_DIGITS`` digits; False when one may (then ``check_record`` decides, record by
    record, with the record's line).

    Level by level in C instead of a Python walk: ``gc.get_referents`` of every container at one
    depth is every value at the next (a dict gives its values, a list its items; strings and
    numbers give nothing), so a record deeper than the limit is one whose values go on past
    ``MAX_RECORD_DEPTH`` levels. Integers are only looked at when the text has a long run of
    digits (or no text is given), and then only their bit length."""
    numbers = text is None or _may_hold_long_numbers(text)
    level = values
    for _ in range(MAX_RECORD_DEPTH):
        if (
            numbers
            and max(map(int.bit_length, filter(int.__instancecheck__, level)), default=0)
            > (_LONG_INT_BITS[0])
        ):
            return False
        level = gc.get_referents(*level)
        if not level:
            return True
    return False  # values below MAX_RECORD_DEPTH levels: a container there is too deep


def _checked(records: list[SeedRecord], values: list[Any], text: str | None) -> Iterable[SeedRecord]:
    """The batch as it is when every record is within the limits, else checked one by one (so
    that the records before a faulty one still come first, as they would one at a time)."""
    return records if _within_limits(values, text) else map(check_record, records)


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


def _line_batches(
    chunks: Iterable[bytes], max_line_chars: int, split: Callable[[str], list[str]] = _split_lf
) -> Iterator[tuple[list[str], str]]:
    """The text's lines, a chunk at a time: ``(lines, text)``, the chunk's complete lines (``split``
    decides where lines end and whether they keep their ends) and the text they were split from.
    Decoded per chunk (a leading BOM dropped) and split in C; a line longer than
    ``max_line_chars`` is refused before more of it is buffered."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    held: list[str] = []  # the unfinished line as it came, joined once it ends (linear, however long)
    held_chars = 0
    line = 1
    for chunk in chunks:
        new = _decode(decoder, chunk, False, line)
        held.append(new)
        # No line end yet (held[0], the last text's unfinished line, may end with a "\r" that
        # ends a line for the csv splitter unless a "\n" follows).
        if "\n" not in new and "\r" not in new and not held[0].endswith("\r"):
            held_chars += len(new)
            if held_chars > max_line_chars:
                raise SeedDataError(f"Line longer than {max_line_chars} bytes", line)
            continue
        text = "".join(held)
        lines = split(text)
        pending = lines.pop()
        if len(pending) > max_line_chars:
            raise SeedDataError(f"Line longer than {max_line_chars} bytes", line + len(lines))
        if lines and max(map(len, lines)) > max_line_chars:
            longest = next(i for i, text in enumerate(lines) if len(text) > max_line_chars)
            raise SeedDataError(f"Line longer than {max_line_chars} bytes", line + longest)
        line += len(lines)
        held, held_chars = [pending], len(pending)
        yield lines, text
    pending = "".join(held) + _decode(decoder, b"", True, line)
    if pending:
        yield [pending], pending


_SCAN = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # the C scanner, without json.loads' wrapping


def _jsonl_batches(chunks: Iterable[bytes], max_record_bytes: int) -> Iterator[Iterable[SeedRecord]]:
    """One object per line, a chunk's lines at a time. The stdlib's C scanner parses each line in
    place; anything unusual (leading space, a blank line, trailing text, an error) goes through
    ``json.loads`` for its exact verdict and message. The records of a chunk before a faulty line
    are yielded before its error."""
    line_no = index = 0
    scan = _SCAN
    for lines, text in _line_batches(chunks, max_record_bytes):
        records: list[SeedRecord] = []
        values: list[Any] = []
        try:
            for line in lines:
                line_no += 1
                try:
                    data, end = scan(line, 0)
                    clean = end == len(line)
                except (StopIteration, ValueError, RecursionError):  # json.loads names the problem
                    clean = False
                if not clean:
                    if not line.strip(" \t\r\n"):
                        continue
                    data = _loads(line, line_no)
                if not isinstance(data, dict):
                    raise SeedDataError(f"Expected a JSON object, found {_json_kind(data)}", line_no)
                values.append(data)
                records.append(_record((line_no, index, data)))
                index += 1
        except SeedDataError:
            yield _checked(records, values, text)
            raise
        yield _checked(records, values, text)


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
# After every line's comma in a one-element-per-line array (``_JsonScanner._line_batch``).
_MARKER = "\x7f"
_MARKED_LINE_END = '\n"\x7f",'
_LAST_MARKER = '"\x7f"]'
_MARKED_LINE_END_B = _MARKED_LINE_END.encode()
_LAST_MARKER_B = _LAST_MARKER.encode()
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

    def batches(self, chunks: Iterable[bytes]) -> Iterator[Iterable[SeedRecord]]:
        """The records, a batch at a time (each already checked against the limits)."""
        self._chunks = iter(chunks)
        self._utf8 = codecs.getincrementaldecoder("utf-8-sig")()
        self._text = ""
        self._pos = 0
        self._line = 1  # the line of ``_text[_pos]``
        self._eof = False
        self._batching = self._line_batching = True
        self._batch_chars = _BATCH_CHARS
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
                yield (check_record(_record((line, index, data))),)
                index += 1
                if state == self._START:
                    state = self._DONE
                    continue
                burst, checked = self._burst(index)
                index += len(burst)
                del burst
                yield checked
                # The caller is done with the batch: free it before the next one is parsed (the
                # memory is reused while in the CPU's cache, and the collector never sees it).
                del checked
                state = self._AFTER_ELEMENT
            else:
                raise SeedDataError(self._unexpected(state, char), self._line)
        if state in (self._ARRAY_FIRST, self._ARRAY_NEXT, self._AFTER_ELEMENT):
            raise SeedDataError("Unexpected end of file: the JSON array is not closed", self._line)

    def _burst(self, index: int) -> tuple[list[SeedRecord], Iterable[SeedRecord]]:
        """The elements that follow in the buffer (and those records checked), read by one C call
        when the layout allows (``_batch``, ``_line_batch``), else comma after comma, parsed back
        to back while each is whole (a few C calls per record, in a plain loop; the list holds at
        most one buffer's records). Anything else (the buffer's end, an error, the array's end) is
        left to the careful path, at the last comma. Line ends are counted only in text that has
        one (``next_lf``)."""
        found = self._batch(index) or self._line_batch(index)
        if found:
            return found
        records: list[SeedRecord] = []
        values: list[Any] = []
        text, pos, line = self._text, self._pos, self._line
        first = pos
        scan, next_element, find, count, limit = self._scan, _NEXT.match, text.find, text.count, self._max
        next_lf = find("\n", pos) % (len(text) + 1)  # -1 (none) becomes len(text)
        append = records.append
        while True:
            if text.startswith(",{", pos):  # the usual separator, without the regular expression
                start = pos + 1
            else:
                found_next = next_element(text, pos)
                if found_next is None:
                    break
                start = found_next.end()
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
            values.append(data)
            append(_record((record_line, index, data)))
            index += 1
            pos = end
        self._pos, self._line = pos, line
        return records, _checked(records, values, text[first:pos])

    def _batch(self, index: int) -> tuple[list[SeedRecord], Iterable[SeedRecord]] | None:
        """The whole elements of a buffer on one line (``json.dumps`` of a list), parsed by one
        C call as an array: ``[`` + the elements up to the buffer's last ``},`` + ``]``. Such a
        cut either ends an element or makes the array invalid (it leaves an object open), so a
        successful parse that consumes the slice exactly is those elements; they are all on
        the cursor's line. Anything else is left to the other paths; after a failed guess
        (a ``},`` inside the last element) the file is read per element from then on. The cut
        is the last ``},`` of about a batch's worth of text (``_batch_chars``), else of the buffer."""
        text, pos = self._text, self._pos
        found = _NEXT.match(text, pos) if self._batching else None
        start = found.end() if found else len(text)
        cut = (text.rfind("},", pos, start + self._batch_chars) + 1) or text.rfind("},", pos) + 1
        if not start < cut <= start + self._max or text.find("\n", pos, cut) >= 0:
            return None
        array = f"[{text[start:cut]}]"
        try:
            elements, end = self._scan(array, 0)
        except (StopIteration, ValueError, RecursionError):
            elements, end = [], 0
        if end != len(array) or not set(map(type, elements)) <= {dict}:
            self._batching = False
            return None
        return self._batched(elements, itertools.repeat(self._line), index, cut, array)

    def _line_batch(self, index: int) -> tuple[list[SeedRecord], Iterable[SeedRecord]] | None:
        """The whole elements of a buffer written one per line (``[`` then ``{...},`` lines: the
        layout of ``",\n".join(map(json.dumps, items))``), parsed by one C call. The buffer's
        whole lines, up to the last one that ends with a comma, become an array with a marker
        string after every line end: ``[{...},\n"\x7f",{...},\n"\x7f",{...},"\x7f"]``.

        The marker cannot come from the data (text holding ``\x7f`` or its escape is not batched
        here), and the parse must be element, marker, element, marker, ... with as many markers as
        were put in (one per line end, and the last): then every marker is in the top-level
        array, not inside an element, so every line end is between two elements, each line holds
        exactly one element followed by its comma, and element ``k`` is on the ``k``-th line.
        That is exactly what the element path would read, line numbers included (the property
        tests compare the two). Anything else is left to the element path. The lines are those
        of about a batch's worth of text (``_batch_chars``), else of the buffer; ASCII text gets
        its markers as bytes (``bytes.replace`` finds the line ends with ``memchr``, where
        ``str.replace`` first counts them character by character: twice as fast with the encoding
        and decoding around it), other text as str (where the encoding costs more)."""
        text, pos = self._text, self._pos
        found = _NEXT.match(text, pos) if self._line_batching else None
        if found is None:
            return None
        start = found.end()
        comma, end = self._last_line_end(start, start + self._batch_chars)
        if comma < 0:  # a line longer than that: as many as the buffer holds
            comma, end = self._last_line_end(start, len(text))
        if not start < comma <= start + self._max:
            return None
        lines = text[start:end]
        if _MARKER in lines or ("\\" in lines and "\\u007" in lines):
            return None
        if lines.isascii():
            array = b"".join(
                (b"[", lines.encode().replace(b"\n", _MARKED_LINE_END_B), _LAST_MARKER_B)
            ).decode()
        else:
            array = "".join(("[", lines.replace("\n", _MARKED_LINE_END), _LAST_MARKER))
        try:
            parsed, parsed_end = self._scan(array, 0)
        except (StopIteration, ValueError, RecursionError):
            parsed, parsed_end = [], 0
        breaks = len(parsed) // 2 - 1  # line ends, if every marker is a top-level element
        elements = parsed[::2]
        if not (
            parsed_end == len(array)
            and len(array) == len(lines) + len(_LAST_MARKER) + 1 + breaks * (len(_MARKED_LINE_END) - 1)
            and parsed.count(_MARKER) == breaks + 1
            and set(map(type, elements)) == {dict}
        ):
            self._line_batching = False
            return None
        first_line = self._line + text.count("\n", pos, start)
        self._line = first_line + breaks  # the line of ``comma``, where the cursor goes
        return self._batched(elements, itertools.count(first_line), index, comma, lines)

    def _last_line_end(self, start: int, limit: int) -> tuple[int, int]:
        """``(comma, end)``: the last comma between ``start`` and ``limit`` that ends a line
        (``,\n``, or ``,\r\n`` when the lines there end so) and that line's end; ``(-1, -1)``
        when there is none."""
        text = self._text
        last = text.rfind("\n", start, limit)
        ending = ",\r\n" if text.startswith("\r", last - 1) else ",\n"
        comma = text.rfind(ending, start, limit)
        return (comma, comma + len(ending) - 1) if comma >= 0 and last >= 0 else (-1, -1)

    def _batched(
        self, elements: list[Any], lines: Iterator[int], index: int, end: int, text: str
    ) -> tuple[list[SeedRecord], Iterable[SeedRecord]]:
        """The batch's records (and them checked); the cursor moves to ``end`` and, when less
        than a batch is left, the next chunk is read in, so that the element cut by this one
        parses at once."""
        records = list(
            map(_new_tuple, itertools.repeat(SeedRecord), zip(lines, itertools.count(index), elements))
        )
        self._pos = end
        # The next batch: _BATCH_CHARS, or 64 records of this batch's mean size when more.
        self._batch_chars = max(_BATCH_CHARS, len(text) // len(elements) * _BATCH_RECORDS)
        if not self._eof and len(self._text) - end < self._batch_chars:
            self._refill(_REFILL_CHARS)
        return records, _checked(records, elements, text)

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


def _csv_batches(chunks: Iterable[bytes], max_record_bytes: int) -> Iterator[list[SeedRecord]]:
    return _CsvReader(_line_batches(chunks, max_record_bytes, _split_csv)).batches()


class _CsvReader:
    """Records of a CSV file, a chunk's lines at a time.

    A chunk without a double quote cannot continue a row onto another line, so each of its
    lines is one row: a fresh C ``csv`` reader splits them and one call of a function compiled
    from the header turns them all into records, the ``k``-th on the chunk's ``k``-th line
    (``_builder``). Any other chunk (and the first, with the header) is read row by row by a C
    ``csv`` reader fed one physical line at a time, so that ``reader.line_num`` counts lines even
    inside quoted newlines (a record's line is the one after the previous record's last line);
    that reader goes on into the next chunks while a row is open and hands back at the first
    chunk boundary between rows.

    Every record has the header's shape with a string at every leaf, so the first record is as
    deep as any and none holds a number: the limits are checked on the first record only."""

    def __init__(self, chunk_lines: Iterable[tuple[list[str], str]]) -> None:
        self._chunks = iter(chunk_lines)
        self._build: _Builder | None = None
        self._index = 0
        self._read = 0  # lines read before the current chunk's (or reader's) first
        self._fed = 0  # lines taken from the chunks so far

    def batches(self) -> Iterator[list[SeedRecord]]:
        for lines, text in self._chunks:
            if self._build is not None and self._quote_free(text):
                try:
                    rows = list(csv.reader(lines, strict=True))
                except csv.Error:  # the row-by-row reader names its line
                    pass
                else:
                    self._fed += len(lines)
                    yield from self._whole_lines(rows)
                    continue
            yield from self._row_by_row(lines)

    @staticmethod
    def _quote_free(text: str) -> bool:
        return '"' not in text

    def _whole_lines(self, rows: list[list[str]]) -> Iterator[list[SeedRecord]]:
        """A quote-free chunk's records: one row per line."""
        assert self._build is not None
        first = self._read + 1
        try:
            records = self._build.all(rows, first, self._index)
        except ValueError:  # a row of another width: blank (skipped) or an error, row by row
            records = []
            try:
                for line, row in enumerate(rows, start=first):
                    self._add(records, row, line)
            except SeedDataError:
                yield self._counted(records, 0)
                raise
        yield self._counted(records, len(rows))

    def _row_by_row(self, lines: list[str]) -> Iterator[list[SeedRecord]]:
        reader = csv.reader(itertools.chain.from_iterable(self._feed(lines)), strict=True)
        records: list[SeedRecord] = []
        last_line = self._read
        try:
            for row in reader:
                first_line, last_line = last_line + 1, self._read + reader.line_num
                if self._build is None:
                    if not _blank(row):
                        self._build = _builder(_csv_header(row, first_line))
                else:
                    self._add(records, row, first_line)
                if last_line == self._fed:  # between rows at the end of a chunk: hand back
                    break
        except csv.Error as error:
            line = self._read + reader.line_num
            yield self._counted(records, 0)
            raise SeedDataError(f"Malformed CSV: {error}", line) from None
        except SeedDataError:
            yield self._counted(records, 0)
            raise
        yield self._counted(records, reader.line_num)

    def _feed(self, lines: list[str]) -> Iterator[list[str]]:
        """``lines``, then the next chunks' lines while the reader asks for them (a row goes on)."""
        self._fed += len(lines)
        yield lines
        for more, _ in self._chunks:
            self._fed += len(more)
            yield more

    def _add(self, records: list[SeedRecord], row: list[str], line: int) -> None:
        assert self._build is not None
        try:
            records.append(self._build(row, line, self._index + len(records)))
        except ValueError:  # the builder unpacks the row: it has another number of cells
            if not _blank(row):
                raise SeedDataError(
                    f"Expected {self._build.columns} columns, found {len(row)}", line
                ) from None

    def _counted(self, records: list[SeedRecord], lines: int) -> list[SeedRecord]:
        """``records``, once counted (and the file's first record checked), ``lines`` read."""
        if records and not self._index:
            check_record(records[0])
        self._index += len(records)
        self._read += lines
        return records


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
    all: Callable[[list[list[str]], int, int], list[SeedRecord]]

    def __call__(self, row: list[str], line: int, index: int, /) -> SeedRecord: ...


def _builder(header: list[list[str]]) -> _Builder:
    """The function from a row to its record, compiled once per file from the header: it unpacks
    the row into locals (a row of another width raises ``ValueError``) and returns the record
    around one nested dict display, e.g. for ``id,author.name,author.bio``::

        def build(row, line, index):
            c0, c1, c2, = row
            return new(SeedRecord, (line, index, {'id': c0, 'author': {'name': c1, 'bio': c2}}))

    so a record costs one call and no per-cell Python, flat or dotted header alike; ``build.all``
    is the same as one list comprehension over many rows, the ``k``-th on line ``line + k``. The
    field names enter the source only as ``repr()`` string literals, never as code."""
    tree: dict[str, Any] = {}
    for column, parts in enumerate(header):
        target = tree
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = column
    cells = "".join(f"c{column}, " for column in range(len(header)))
    record = f"new(SeedRecord, (line, index, {_display(tree)}))"
    source = (
        f"def build(row, line, index):\n    {cells}= row\n    return {record}\n"
        f"def build_all(rows, line, index):\n    return [{record} for line, index, ({cells})"
        " in zip(count(line), count(index), rows)]\n"
    )
    namespace: dict[str, Any] = {"new": tuple.__new__, "SeedRecord": SeedRecord, "count": itertools.count}
    exec(compile(source, "<csv header>", "exec"), namespace)  # noqa: S102  # names are repr() literals
    build = namespace["build"]
    build.columns = len(header)
    build.all = namespace["build_all"]
    return cast(_Builder, build)


def _display(node: dict[str, Any]) -> str:
    """The dict display of a header subtree: a leaf is its column's local (``c3``)."""
    items = (
        f"{name!r}: {f'c{value}' if isinstance(value, int) else _display(value)}"
        for name, value in node.items()
    )
    return "{" + ", ".join(items) + "}"
