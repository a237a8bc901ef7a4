"""Property tests for the seed reader's fast paths (issue 11 item 6): whatever the layout, the chunk
size and the data, the batched paths give the same records, the same lines and the same errors
(message and line) as the element-by-element path with every record walked by ``check_record``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.seed_data import reader
from functions.seed_data.reader import SeedDataError, iter_seed_records

pytestmark = pytest.mark.unit

# Characters that matter to the fast paths: framing, escapes, the line marker and its escape,
# digits (long runs), line ends, and some non-ASCII.
TRICKY = st.text(alphabet='{}[]",:\\ \n\r\t\x7fu007abcé🎉', max_size=12)
NUMBERS = st.one_of(
    st.integers(min_value=-(10**130), max_value=10**130),
    st.floats(allow_nan=False, allow_infinity=False),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TRICKY)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(TRICKY, children, max_size=3)),
    max_leaves=8,
)


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    record = draw(st.dictionaries(TRICKY, VALUES, max_size=4))
    depth = draw(st.sampled_from([0, 0, 0, 62, 63, 64, 65, 70]))
    if depth:  # a chain right at (or past) MAX_RECORD_DEPTH, of objects or arrays
        leaf: Any = draw(SCALARS)
        for level in range(depth - 1):
            leaf = {"d": leaf} if level % 3 else [leaf]
        record["deep"] = leaf
    return record


SEPARATORS = [",", ", ", ",\n", ",\n  ", ",\r\n", " ,\n", "\n,", ",\n\n", ",\n\t"]
CHUNK_SIZES = [1, 7, 64, 300, 4096, 1_000_000]


@st.composite
def json_arrays(draw: st.DrawFn) -> str:
    items = draw(st.lists(records(), max_size=12))
    ensure_ascii = draw(st.booleans())
    indent = draw(st.sampled_from([None, None, None, 2]))
    texts = [json.dumps(item, ensure_ascii=ensure_ascii, indent=indent) for item in items]
    one_layout = draw(st.booleans())
    layout = draw(st.sampled_from(SEPARATORS))
    body = ""
    for position, text in enumerate(texts):
        separator = layout if one_layout else draw(st.sampled_from(SEPARATORS))
        body += (separator if position else "") + text
    opening = draw(st.sampled_from(["[", "[\n  ", "\ufeff[\n", "  [ "]))
    document = opening + body + draw(st.sampled_from(["]", "\n]", "\n]\n"]))
    return draw(damaged(document))


@st.composite
def damaged(draw: st.DrawFn, document: str) -> str:
    """The document, or (one time in three) with a piece cut out or something put in."""
    if not document or draw(st.integers(0, 2)):
        return document
    at = draw(st.integers(0, len(document)))
    if draw(st.booleans()):
        return document[:at] + document[at + draw(st.integers(1, 5)) :]
    return (
        document[:at]
        + draw(st.sampled_from(["1,", '"x",', "{", "}", "]", ",", "\n", "\x7f", "\\u007f"]))
        + document[at:]
    )


def outcome(
    data: bytes, fmt: str, size: int, batch: int | None = None
) -> tuple[list[tuple[int, int, Any]], tuple[str, int | None] | None]:
    """(records read, the error: message and line) with chunks of ``size`` bytes (and, when
    given, batches of at most ``batch`` characters instead of the reader's own size)."""
    got: list[tuple[int, int, Any]] = []
    with pytest.MonkeyPatch.context() as patch:
        if batch is not None:
            patch.setattr(reader, "_BATCH_CHARS", batch)
            patch.setattr(reader, "_PIECE_BYTES", batch)
            patch.setattr(reader, "_BATCH_RECORDS", 1)
        try:
            for record in iter_seed_records((data[i : i + size] for i in range(0, len(data), size)), fmt):
                got.append((record.line, record.index, record.data))
        except SeedDataError as error:
            return got, (error.message, error.line)
    return got, None


def reference(data: bytes, fmt: str, size: int) -> Any:
    """The outcome without any fast path: element by element, row by row, every record walked."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reader._JsonScanner, "_batch", lambda self, index: None)
        patch.setattr(reader._JsonScanner, "_line_batch", lambda self, index: None)
        patch.setattr(reader._CsvReader, "_quote_free", staticmethod(lambda text: False))
        patch.setattr(reader, "_within_limits", lambda values, text: False)
        return outcome(data, fmt, size)


def same(left: Any, right: Any) -> bool:
    """Equal, with NaN-free floats compared by value and -0.0 told from 0.0 (json round trip)."""
    return json.dumps(left, sort_keys=True) == json.dumps(right, sort_keys=True)


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Batch sizes (characters of JSON per C call, bytes of JSONL/CSV decoded at a time) small enough
# for the generated documents to be read in many batches, cut anywhere.
BATCH_SIZES = [None, 1, 5, 40, 300]


@SETTINGS
@given(document=json_arrays(), size=st.sampled_from(CHUNK_SIZES), batch=st.sampled_from(BATCH_SIZES))
def test_json_arrays_read_the_same_by_every_path(document: str, size: int, batch: int | None) -> None:
    data = document.encode()
    fast = outcome(data, "a.json", size, batch)
    assert same(fast, reference(data, "a.json", size))
    if fast[1] is None and document.strip(" \t\r\n\ufeff"):  # what was read is what the stdlib
        # parser reads, in order (a blank document is read as no records, where json.loads fails)
        parsed = json.loads(document.lstrip("\ufeff"))
        assert same([record for _, _, record in fast[0]], parsed if isinstance(parsed, list) else [parsed])


@st.composite
def jsonl_documents(draw: st.DrawFn) -> str:
    items = draw(st.lists(records(), max_size=10))
    ensure_ascii = draw(st.booleans())
    blank = draw(st.sampled_from(["", "\n", "  \r\n"]))
    return draw(damaged((blank + "\n").join(json.dumps(i, ensure_ascii=ensure_ascii) for i in items)))


@SETTINGS
@given(document=jsonl_documents(), size=st.sampled_from(CHUNK_SIZES), batch=st.sampled_from(BATCH_SIZES))
def test_jsonl_reads_the_same_with_and_without_the_batch_checks(
    document: str, size: int, batch: int | None
) -> None:
    data = document.encode()
    assert same(outcome(data, "a.jsonl", size, batch), reference(data, "a.jsonl", size))


CELLS = st.text(alphabet='ab,"\n\r x.é', max_size=6)


@st.composite
def csv_documents(draw: st.DrawFn) -> str:
    header = draw(
        st.lists(st.sampled_from(["a", "b", "c.d", "c.e", "f.g.h"]), min_size=1, max_size=4, unique=True)
    )
    rows = draw(st.lists(st.lists(CELLS, min_size=0, max_size=5), max_size=15))
    ending = draw(st.sampled_from(["\n", "\r\n", "\r"]))

    def cell(value: str) -> str:
        return '"' + value.replace('"', '""') + '"' if any(c in value for c in ',"\n\r') else value

    return ending.join([",".join(header)] + [",".join(map(cell, row)) for row in rows]) + ending


@SETTINGS
@given(document=csv_documents(), size=st.sampled_from(CHUNK_SIZES), batch=st.sampled_from(BATCH_SIZES))
def test_csv_reads_the_same_by_whole_lines_and_row_by_row(
    document: str, size: int, batch: int | None
) -> None:
    data = document.encode()
    assert same(outcome(data, "a.csv", size, batch), reference(data, "a.csv", size))


@SETTINGS
@given(
    fmt_document=st.one_of(
        st.tuples(st.just("a.json"), json_arrays()),
        st.tuples(st.just("a.jsonl"), jsonl_documents()),
        st.tuples(st.just("a.csv"), csv_documents()),
    ),
    size=st.sampled_from(CHUNK_SIZES),
    batch=st.sampled_from(BATCH_SIZES),
)
def test_how_the_file_is_cut_changes_nothing(
    fmt_document: tuple[str, str], size: int, batch: int | None
) -> None:
    """Chunks of any size and batches of any size (a line longer than many chunks is held in
    pieces until it ends) read the same as the whole file at once."""
    fmt, document = fmt_document
    data = document.encode()
    assert same(outcome(data, fmt, size, batch), outcome(data, fmt, max(1, len(data)), 10**9))


def test_the_line_batch_is_taken_for_one_element_per_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The property above is only worth something if the fast path runs: it does for this layout."""
    taken: list[int] = []
    line_batch = reader._JsonScanner._line_batch

    def spy(self: Any, index: int) -> Any:
        found = line_batch(self, index)
        taken.append(len(found[0]) if found else 0)
        return found

    monkeypatch.setattr(reader._JsonScanner, "_line_batch", spy)
    for text in ("x" * 50, "é🎉" * 25):  # ASCII lines are marked as bytes, the others as str
        taken.clear()
        items = [{"n": i, "s": text} for i in range(2000)]
        document = "[\n  " + ",\n  ".join(json.dumps(i, ensure_ascii=False) for i in items) + "\n]\n"
        chunks = [document.encode()[i : i + 256 * 1024] for i in range(0, len(document.encode()), 256 * 1024)]
        records = list(iter_seed_records(iter(chunks), "a.json"))
        assert [r.line for r in records] == list(range(2, 2002))
        assert [r.data for r in records] == items
        assert sum(taken) > 1900
        assert max(taken) < 1000  # in batches of about reader._BATCH_CHARS, not a buffer at a time


@pytest.mark.parametrize("layout", [",", ",\n", ",\n  "])
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ('{"a": ' * 65 + "1" + "}" * 65, "deeper than 64 levels"),
        ('{"a": [' * 33 + "[]" + "]}" * 33, "deeper than 64 levels"),
        ('{"n": ' + "9" * 101 + "}", "integer with more than 100 digits"),
        ('{"n": [1, {"m": -' + "1" * 150 + "}]}", "integer with more than 100 digits"),
    ],
)
def test_a_batch_with_a_hostile_record_yields_the_records_before_it_then_its_error(
    layout: str, bad: str, message: str
) -> None:
    good = [json.dumps({"n": i, "text": "1234567890" * 3}) for i in range(300)]
    elements = [*good[:200], bad, *good[200:]]
    document = "[" + layout.join(elements) + "]"
    got, error = outcome(document.encode(), "a.json", 1_000_000)
    assert error is not None
    assert message in error[0]
    assert len(got) == 200
    assert error[1] == (1 if layout == "," else 201)
