"""The streaming seed reader: every format, chunk boundaries anywhere, malformed input by line."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from functions.seed_data.reader import (
    SeedDataError,
    SeedFormat,
    SeedRecord,
    detect_format,
    iter_seed_records,
)

pytestmark = pytest.mark.unit

CHUNK_SIZES = [1, 2, 7, 64, 1_000_000]


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def read(data: str | bytes, fmt: str, size: int = 1_000_000, **kwargs: int) -> list[SeedRecord]:
    raw = data.encode() if isinstance(data, str) else data
    return list(iter_seed_records(chunked(raw, size), fmt, **kwargs))


def error_of(data: str | bytes, fmt: str, size: int = 1_000_000) -> SeedDataError:
    with pytest.raises(SeedDataError) as caught:
        read(data, fmt, size)
    return caught.value


# ------------------------------------------------------------------ format


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        ("authors.json", SeedFormat.JSON),
        ("AUTHORS.JSONL", SeedFormat.JSONL),
        ("a.b.ndjson", SeedFormat.JSONL),
        ("x.csv", SeedFormat.CSV),
        ("application/json", SeedFormat.JSON),
        ("application/x-ndjson", SeedFormat.JSONL),
        ("text/csv; charset=utf-8", SeedFormat.CSV),
        (SeedFormat.CSV, SeedFormat.CSV),
    ],
)
def test_format_comes_from_the_name_or_the_content_type(hint: str, expected: SeedFormat) -> None:
    assert detect_format(hint) is expected


def test_the_first_hint_that_names_a_format_wins() -> None:
    assert detect_format("seed.txt", None, "text/csv") is SeedFormat.CSV
    assert detect_format("seed.jsonl", "text/csv") is SeedFormat.JSONL


@pytest.mark.parametrize("hint", ["notes.txt", "application/octet-stream", "noextension", ""])
def test_an_unknown_format_is_refused(hint: str) -> None:
    with pytest.raises(SeedDataError, match="Unsupported"):
        read('{"a": 1}', hint)


# -------------------------------------------------------------------- JSON


TRICKY_ARRAY = (
    "\ufeff[\n"
    '  {"name": "Ada", "bio": "likes [brackets] and {braces}", "q": "say \\"hi\\" \\\\"},\n'
    '  {"name": "Émile 🎉", "nested": {"books": [{"title": "a"}, {"title": "b"}]}}\n'
    "  ,\n"
    '  {"name":\n"multi-line record"}\n'
    "]\n"
)


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_a_json_array_of_objects_is_read_record_by_record(size: int) -> None:
    records = read(TRICKY_ARRAY, "seed.json", size)
    assert [r.index for r in records] == [0, 1, 2]
    assert [r.line for r in records] == [2, 3, 5]
    assert records[0].data == {"name": "Ada", "bio": "likes [brackets] and {braces}", "q": 'say "hi" \\'}
    assert records[1].data == {"name": "Émile 🎉", "nested": {"books": [{"title": "a"}, {"title": "b"}]}}
    assert records[2].data == {"name": "multi-line record"}


@pytest.mark.parametrize("size", [1, 5, 1_000_000])
def test_a_single_json_object_is_one_record(size: int) -> None:
    records = read('\n\n  {"author": {"name": "Ada"}}  \n', "application/json", size)
    assert records == [SeedRecord(line=3, index=0, data={"author": {"name": "Ada"}})]


@pytest.mark.parametrize("content", ["", "   \n", "[]", "[\n]\n"])
def test_empty_json_yields_no_records(content: str) -> None:
    assert read(content, "x.json") == []


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        ('[\n{"a": 1},\n{"b": tru}\n]', 3, "Malformed JSON"),
        ('[\n{"a": 1,\n "b": }\n]', 3, "Malformed JSON"),
        ('[\n{"a": 1},\n]', 3, "trailing comma"),
        ('[\n{"a": 1},\n42\n]', 3, "not an object"),
        ('[\n{"a": 1}\n{"b": 2}\n]', 3, "expected ',' or ']'"),
        ('[\n{"a": 1}\n', 3, "not closed"),
        ('[\n{"a": [1, 2}\n', 2, "Malformed JSON: Expecting ',' delimiter"),
        ('[\n{"a": [1, 2]\n', 2, "end of file inside a JSON object"),
        ('[\n{"a": "never closed\n', 2, "end of file inside a JSON object"),
        ('{"a": 1}\n{"b": 2}\n', 2, "after the end"),
        ('"just a string"', 1, "Expected a JSON object"),
    ],
)
@pytest.mark.parametrize("size", [1, 1_000_000])
def test_malformed_json_names_the_line(content: str, line: int, message: str, size: int) -> None:
    error = error_of(content, "x.json", size)
    assert error.line == line
    assert message in error.message


def test_a_record_larger_than_the_limit_is_refused() -> None:
    big = json.dumps([{"a": 1}, {"text": "x" * 5000}])
    with pytest.raises(SeedDataError, match="larger than 1000 bytes") as caught:
        read(big, "x.json", 64, max_record_bytes=1000)
    assert caught.value.line == 1


def test_records_are_yielded_before_the_rest_of_the_stream_is_read() -> None:
    consumed = 0

    def endless() -> Iterator[bytes]:
        nonlocal consumed
        yield b"["
        while True:
            consumed += 1
            yield b'{"n": 1},\n'

    records = iter_seed_records(endless(), "x.json")
    first = [next(records) for _ in range(3)]
    assert [r.index for r in first] == [0, 1, 2]
    assert consumed <= 4


# ------------------------------------------------------------------- JSONL


JSONL = '{"name": "Ada"}\r\n\n{"name": "Bob", "author": {"bio": "x"}}\n   \n{"name": "Cy"}'


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_jsonl_is_one_object_per_line_skipping_blank_lines(size: int) -> None:
    records = read(JSONL, "seed.jsonl", size)
    assert [(r.line, r.index) for r in records] == [(1, 0), (3, 1), (5, 2)]
    assert records[1].data == {"name": "Bob", "author": {"bio": "x"}}


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        ('{"a": 1}\n{"a": 2\n{"a": 3}\n', 2, "Malformed JSON"),
        ('{"a": 1}\n\n[1, 2]\n', 3, "found an array"),
        ('{"a": 1}\nnull\n', 2, "found null"),
        (b'{"a": 1}\n{"a": "\xff"}\n', 2, "UTF-8"),
    ],
)
def test_malformed_jsonl_names_the_line(content: str | bytes, line: int, message: str) -> None:
    error = error_of(content, "application/x-ndjson", 3)
    assert error.line == line
    assert message in error.message


def test_an_overlong_jsonl_line_is_refused_without_buffering_it_all() -> None:
    def huge() -> Iterator[bytes]:
        yield b'{"a": 1}\n{"a": "'
        for _ in range(1000):
            yield b"x" * 1000

    with pytest.raises(SeedDataError, match="longer than") as caught:
        list(iter_seed_records(huge(), "x.jsonl", max_record_bytes=10_000))
    assert caught.value.line == 2


@pytest.mark.parametrize("size", [1, 3, 1_000_000])
@pytest.mark.parametrize(
    ("fmt", "header", "row", "ending"),
    [("x.csv", "a", "123456", "\r"), ("x.csv", "a", "123456", "\r\n"), ("x.jsonl", "", '{"n": 1}', "\n")],
)
def test_each_line_is_held_to_the_limit_on_its_own_however_the_file_is_cut(
    fmt: str, header: str, row: str, ending: str, size: int
) -> None:
    """A line cut over many chunks is held until it ends and counted against the limit alone: a
    line end at a chunk's end (a csv ``\r`` may wait for a ``\n``) still ends it."""
    limit = len(row) + len(ending)
    first = 2 if header else 1
    rows = [row] * 5
    document = "".join(line + ending for line in ([header] if header else []) + rows)
    assert len(read(document, fmt, size, max_record_bytes=limit)) == 5
    rows[1] = row[:-1] + "99" + row[-1]  # longer than the limit
    document = "".join(line + ending for line in ([header] if header else []) + rows)
    with pytest.raises(SeedDataError, match="longer than") as caught:
        read(document, fmt, size, max_record_bytes=limit)
    assert caught.value.line == first + 1


# --------------------------------------------------------------------- CSV


CSV = (
    "\ufeffid,author.name,author.bio,author.address.city\r\n"
    "1,Ada,Mathematician,London\r\n"
    '2,"Bob, Jr.","says ""hi""\non two lines",Paris\r\n'
    "\r\n"
    "3,Cy,,\r\n"
)


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_csv_dotted_columns_become_nested_records(size: int) -> None:
    records = read(CSV, "seed.csv", size)
    assert [(r.line, r.index) for r in records] == [(2, 0), (3, 1), (6, 2)]
    assert records[0].data == {
        "id": "1",
        "author": {"name": "Ada", "bio": "Mathematician", "address": {"city": "London"}},
    }
    assert records[1].data["author"]["bio"] == 'says "hi"\non two lines'
    assert records[2].data == {"id": "3", "author": {"name": "Cy", "bio": "", "address": {"city": ""}}}


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        ("a,b\n1,2\n3\n", 3, "Expected 2 columns, found 1"),
        ("a,b\n1,2,3\n", 2, "Expected 2 columns"),
        ("author,author.name\nx,y\n", 1, "conflict"),
        ("a,a\n1,2\n", 1, "repeats"),
        ("a,.b\n1,2\n", 1, "not a valid field name"),
        ('a,b\n1,"unterminated\n', 2, "Malformed CSV"),
        ('a,b\n1,2\n3,"x"y\n', 3, "Malformed CSV"),
    ],
)
def test_malformed_csv_names_the_line(content: str, line: int, message: str) -> None:
    error = error_of(content, "text/csv", 4)
    assert error.line == line
    assert message in error.message


def test_a_header_only_csv_has_no_records() -> None:
    assert read("a,b\n", "x.csv") == []


# The seeds: Python's JSON parser raised ValueError / RecursionError, which escaped as a 500
# from POST /seed-data/validate and a WorkerError from the worker.
@pytest.mark.parametrize("fmt", ["a.json", "a.jsonl"])
@pytest.mark.parametrize(
    ("record", "message"),
    [
        ('{"n": ' + "7" * 5000 + "}", "integer with more than 100 digits"),
        ('{"n": ' + "7" * 101 + "}", "integer with more than 100 digits"),
        ('{"n": -' + "7" * 150 + "}", "integer with more than 100 digits"),
        ('{"a": ' * 100_000 + "1" + "}" * 100_000, "deeper than 64 levels"),
        ('{"a": ' * 65 + "1" + "}" * 65, "deeper than 64 levels"),
        ('{"a": [' * 40 + "1" + "]}" * 40, "deeper than 64 levels"),
    ],
    ids=["5000-digits", "101-digits", "negative", "100k-deep", "65-deep", "80-deep-with-arrays"],
)
def test_malformed_records_are_seed_data_errors_naming_the_line(fmt: str, record: str, message: str) -> None:
    data = '{"ok": 1}\n' + record + "\n"
    if fmt == "a.json":
        data = "[" + data.replace("\n", ",\n", 1) + "]"
    error = error_of(data, fmt)
    assert message in error.message
    assert error.line == 2


def test_records_at_the_limits_are_read() -> None:
    record = '{"a": ' * 63 + '{"n": ' + "9" * 100 + ', "f": 1.' + "5" * 200 + "}" + "}" * 63
    (record_read,) = read(record, "a.jsonl")
    assert record_read.line == 1


@pytest.mark.parametrize(
    ("header", "row", "expected"),
    [
        ("a,b,c", "1,2,3", {"a": "1", "b": "2", "c": "3"}),
        (
            "author.name,title,author.bio",
            "Ada,Notes,Maths",
            {"author": {"name": "Ada", "bio": "Maths"}, "title": "Notes"},
        ),
        ("x.y.z", "deep", {"x": {"y": {"z": "deep"}}}),
    ],
)
def test_csv_records_take_the_shape_of_their_header(header: str, row: str, expected: dict) -> None:
    assert [r.data for r in read(f"{header}\n{row}\n", "x.csv")] == [expected]


# ----------------------------------------------- fast paths (issue 11 item 6)


def one_line_array(records: list[dict]) -> str:
    return "[" + ",".join(json.dumps(record) for record in records) + "]"


@pytest.mark.parametrize("size", [7, 64, 300, 1_000_000])
def test_a_one_line_json_array_is_read_in_batches_with_lines_and_indices(size: int) -> None:
    records = [{"n": i, "tags": [{"a": i}, {"b": i}]} for i in range(40)]  # "}," inside elements too
    # The first element is read on its own; batching starts after it.
    read_back = read('[{"lead": 0},' + one_line_array(records)[1:], "a.json", size)
    assert [(r.line, r.index) for r in read_back] == [(1, 0)] + [(1, i + 1) for i in range(40)]
    assert [r.data for r in read_back[1:]] == records


@pytest.mark.parametrize("size", [7, 64, 300, 1_000_000])
def test_a_json_array_that_turns_multi_line_keeps_every_line(size: int) -> None:
    first = one_line_array([{"n": i} for i in range(30)])[:-1]  # 30 elements on line 1
    rest = "".join(f',\n  {{"n": {i},\n "x": "}},"}}' for i in range(30, 40))  # then two lines each
    read_back = read(first + rest + "\n]", "a.json", size)
    assert [r.data["n"] for r in read_back] == list(range(40))
    assert [r.line for r in read_back] == [1] * 30 + [2 + 2 * i for i in range(10)]


@pytest.mark.parametrize(
    ("element", "message"),
    [("1", "an element that is not an object"), ('"x"', "an element that is not an object")],
)
def test_a_bad_element_in_a_one_line_array_names_its_line(element: str, message: str) -> None:
    data = one_line_array([{"n": i} for i in range(20)])[:-1] + "," + element + ',{"n": 99}]'
    error = error_of("\n\n" + data, "a.json", 64)
    assert error.line == 3
    assert message in error.message


def test_a_one_line_array_closed_early_is_an_error() -> None:
    data = one_line_array([{"n": i} for i in range(5)]) + ',{"n": 5},{"n": 6}]'
    error = error_of(data, "a.json")
    assert "after the end of the JSON document" in error.message


def test_the_record_limit_holds_on_a_one_line_array() -> None:
    data = one_line_array([{"n": i} for i in range(3)] + [{"big": "x" * 200}])
    with pytest.raises(SeedDataError, match="larger than 100 bytes"):
        read(data, "a.json", max_record_bytes=100)


@pytest.mark.parametrize("size", CHUNK_SIZES)
@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("a,b", {"a": "2", "b": 'x\n"y"\n'}),
        ("a,b.c", {"a": "2", "b": {"c": 'x\n"y"\n'}}),
    ],
    ids=["flat", "dotted"],
)
def test_csv_rows_after_quoted_newlines_keep_their_lines(size: int, header: str, expected: dict) -> None:
    content = f'{header}\r\n1,one\r\n2,"x\n""y""\n"\r\n\r\n3,three\n4\n'
    records = []
    with pytest.raises(SeedDataError) as caught:
        records.extend(iter_seed_records(chunked(content.encode(), size), "x.csv"))
    assert [(r.line, r.index) for r in records] == [(2, 0), (3, 1), (7, 2)]
    assert records[1].data == expected
    assert (caught.value.line, caught.value.message) == (8, "Expected 2 columns, found 1")


@pytest.mark.parametrize(
    "name", ["it's", 'say "hi"', "back\\slash", "'); import os; ('", "{c0}", "ünï\u2028code", "1"]
)
def test_csv_header_names_are_only_ever_data(name: str) -> None:
    first, second = ('"' + column.replace('"', '""') + '"' for column in (name, f"b.{name}"))
    (record,) = read(f"{first},{second}\nv,w\n", "x.csv")
    assert record.data == {name: "v", "b": {name: "w"}}


def test_a_wide_csv_header_is_read() -> None:
    header = ",".join(f"g{i // 10}.f{i}" for i in range(500))
    (record,) = read(header + "\n" + ",".join(str(i) for i in range(500)) + "\n", "x.csv")
    assert record.data["g49"] == {f"f{i}": str(i) for i in range(490, 500)}


@pytest.mark.parametrize("content", ["", "\n\n", "\r\n \r\n"])
def test_a_csv_without_a_header_has_no_records(content: str) -> None:
    assert read(content, "x.csv") == []
