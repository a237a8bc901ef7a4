"""Seed records in order, cycling when the job needs more records than the file holds.

A job's ``seed_data_path`` is one file, or a folder (ending in ``/``): every file in it, in key
order (listed once per job), read as one stream of records, each file opened as the stream reaches it.

Record position ``p`` of a job uses seed record ``p % n``. The file is streamed, never held in
memory: each pass over it is a fresh streamed read (one S3 GET, counted in ``opens`` so the
batch that started the pass is billed for it). A restarted worker ``skip``s to where it left off;
once the file's length is known it skips whole passes without reading them again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from functions.common.storage import is_seed_folder


class SeedSource(Protocol):
    def open(self, key: str) -> Iterator[dict[str, Any]]: ...

    def list_keys(self, folder: str) -> list[str]: ...


class EmptySeedFileError(Exception):
    """The seed file holds no records."""


class SeedCursor:
    def __init__(self, source: SeedSource, key: str) -> None:
        self._source = source
        self._key = key
        self._records: Iterator[dict[str, Any]] | None = None
        self._consumed = 0  # records read from the current pass
        self.count: int | None = None  # records in the file, once a pass has ended
        self.opens = 0
        self._files: list[str] | None = None  # a folder's files, listed on the first pass

    def _open(self) -> None:
        if is_seed_folder(self._key):
            if self._files is None:
                self._files = self._source.list_keys(self._key)
            self._records = self._chain(self._files)
        else:
            self._records = self._source.open(self._key)
            self.opens += 1
        self._consumed = 0

    def _chain(self, keys: list[str]) -> Iterator[dict[str, Any]]:
        for key in keys:
            records = self._source.open(key)
            self.opens += 1
            yield from records

    def next(self) -> tuple[int, dict[str, Any]]:
        """The next position's (seed_index, seed record)."""
        if self._records is None:
            self._open()
        assert self._records is not None
        try:
            record = next(self._records)
        except StopIteration:
            if self._consumed == 0:
                raise EmptySeedFileError(f"the seed file {self._key} holds no records") from None
            self.count = self._consumed
            self._open()
            try:
                record = next(self._records)
            except StopIteration:
                raise EmptySeedFileError(f"the seed file {self._key} holds no records") from None
        index = self._consumed
        self._consumed += 1
        return index, record

    def skip(self, positions: int) -> None:
        """Move past ``positions`` positions, as if ``next`` had been called that many times,
        leaving the cursor in the same state (so the next pass is opened, and billed, by the
        same position as in an uninterrupted run)."""
        while positions > 0 and self.count is None:
            self.next()
            positions -= 1
        if positions == 0:
            return
        assert self.count is not None
        # After the skip, the current pass must have consumed r records, 1 <= r <= count.
        already = self._consumed
        target = (already + positions - 1) % self.count + 1
        if target < already or self._records is None:
            self._open()
        assert self._records is not None
        while self._consumed < target:
            next(self._records)
            self._consumed += 1
