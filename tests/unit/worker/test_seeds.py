"""The seed cursor: order, cycling, and a skip that leaves it exactly where reading would."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from functions.worker.seeds import EmptySeedFileError, SeedCursor

pytestmark = pytest.mark.unit


class ListSource:
    def __init__(self, records: list[dict]) -> None:
        self.records = records

    def open(self, key: str) -> Iterator[dict]:
        return iter(list(self.records))


RECORDS = [{"n": i} for i in range(3)]


def read(cursor: SeedCursor, count: int) -> list[tuple[int, dict]]:
    return [cursor.next() for _ in range(count)]


def test_records_come_in_order_and_cycle_with_one_open_per_pass():
    cursor = SeedCursor(ListSource(RECORDS), "k")
    assert [i for i, _ in read(cursor, 7)] == [0, 1, 2, 0, 1, 2, 0]
    assert cursor.opens == 3
    assert cursor.count == 3


@pytest.mark.parametrize("skip", [0, 1, 2, 3, 4, 6, 7, 3001])
def test_skip_is_equivalent_to_reading(skip):
    read_through = SeedCursor(ListSource(RECORDS), "k")
    read(read_through, skip)
    skipped = SeedCursor(ListSource(RECORDS), "k")
    skipped.skip(skip)

    opens_before = (read_through.opens, skipped.opens)
    assert read(skipped, 5) == read(read_through, 5)
    # The passes opened after the skip are the same ones (and so billed to the same batch).
    assert skipped.opens - opens_before[1] == read_through.opens - opens_before[0]


def test_a_long_skip_does_not_reread_the_file_for_every_pass():
    cursor = SeedCursor(ListSource(RECORDS), "k")
    cursor.skip(1_000_000)
    assert cursor.opens <= 3


def test_an_empty_seed_file_is_an_error():
    with pytest.raises(EmptySeedFileError):
        SeedCursor(ListSource([]), "k").next()


class FolderSource:
    """Files by key; a folder lists the keys under it in key order (as S3 does)."""

    def __init__(self, files: dict[str, list[dict]]) -> None:
        self.files = files
        self.listed = 0

    def open(self, key: str) -> Iterator[dict]:
        return iter(list(self.files[key]))

    def list_keys(self, folder: str) -> list[str]:
        self.listed += 1
        return sorted(key for key in self.files if key.startswith(folder))


def test_a_folder_is_every_file_in_key_order_as_one_stream_listed_once():
    source = FolderSource(
        {
            "seed-data/u/batch/b.jsonl": [{"n": 2}, {"n": 3}],
            "seed-data/u/batch/a.jsonl": [{"n": 0}, {"n": 1}],
            "seed-data/u/other.jsonl": [{"n": 99}],
        }
    )
    cursor = SeedCursor(source, "seed-data/u/batch/")
    assert [(i, r["n"]) for i, r in read(cursor, 6)] == [(0, 0), (1, 1), (2, 2), (3, 3), (0, 0), (1, 1)]
    assert cursor.count == 4
    assert cursor.opens == 3  # one S3 GET per file opened: a, b, then a again
    assert source.listed == 1


def test_a_skip_through_a_folder_is_equivalent_to_reading():
    files = {"f/a": [{"n": 0}], "f/b": [{"n": 1}, {"n": 2}]}
    read_through = SeedCursor(FolderSource(files), "f/")
    read(read_through, 5)
    skipped = SeedCursor(FolderSource(files), "f/")
    skipped.skip(5)
    assert read(skipped, 4) == read(read_through, 4)


def test_an_empty_folder_is_an_empty_seed():
    with pytest.raises(EmptySeedFileError):
        SeedCursor(FolderSource({}), "f/").next()
