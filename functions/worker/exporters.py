"""The export: every part of a job, streamed into one ``dataset.{jsonl,csv,parquet}``.

Parts are read one at a time (one S3 GET each) and appended to a local temporary file — for
Parquet, one row group per part through ``pyarrow.parquet.ParquetWriter`` — and the file is
uploaded with a managed (multipart when large) upload. Memory holds at most one part.

Columns: JSONL keeps the record shape ``{id, job_id, seed_index, created_at, steps}``; Parquet keeps
it too, ``steps`` as a struct of one ``{prompt, output, model}`` struct per step; CSV flattens the
steps into ``steps.<id>.prompt``, ``steps.<id>.output``, ``steps.<id>.model`` columns.

CSV formula injection: prompts come from (possibly public, another user's) templates and outputs
from models, and a spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or
carriage return before one) as a formula. So, as OWASP recommends, every CSV cell that starts with
one of ``= + - @ \t \r`` gets a single quote in front (``=HYPERLINK(...)`` is written
``'=HYPERLINK(...)``); spreadsheets show the text, and nothing else changes. JSONL and Parquet keep
the values as generated (they are data formats, not opened as spreadsheets).
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from boto3.s3.transfer import TransferConfig

from functions.worker.models import OutputFormat
from functions.worker.repository import OutputStore

CHUNK_BYTES = 8 * 1024 * 1024
BASE_COLUMNS = ("id", "job_id", "seed_index", "created_at")
STEP_FIELDS = ("prompt", "output", "model")
CONTENT_TYPES = {
    OutputFormat.JSONL: "application/x-ndjson",
    OutputFormat.CSV: "text/csv",
    OutputFormat.PARQUET: "application/vnd.apache.parquet",
}


@dataclass(frozen=True)
class ExportResult:
    key: str
    records: int
    puts: int
    gets: int


def _upload_requests(size: int) -> int:
    """PUT-class requests of a managed upload: one PUT, or create + parts + complete."""
    if size < CHUNK_BYTES:
        return 1
    return math.ceil(size / CHUNK_BYTES) + 2


class Exporter:
    def __init__(self, outputs: OutputStore, temp_dir: str | None = None) -> None:
        self._outputs = outputs
        self._temp_dir = temp_dir
        self._config = TransferConfig(multipart_threshold=CHUNK_BYTES, multipart_chunksize=CHUNK_BYTES)

    def export(
        self,
        job_id: str,
        fmt: OutputFormat,
        batch_count: int,
        step_ids: Sequence[str],
        on_progress: Callable[[], None] = lambda: None,
    ) -> ExportResult:
        def parts() -> Iterator[list[dict[str, Any]]]:
            for batch_index in range(batch_count):
                yield list(self._outputs.iter_part(job_id, batch_index))
                on_progress()

        with tempfile.TemporaryDirectory(dir=self._temp_dir) as directory:
            path = os.path.join(directory, f"dataset.{fmt.extension}")
            writer = {OutputFormat.JSONL: _jsonl, OutputFormat.CSV: _csv, OutputFormat.PARQUET: _parquet}[fmt]
            records = writer(path, parts(), list(step_ids))
            size = os.path.getsize(path)
            key = self._outputs.upload_export(job_id, fmt, path, CONTENT_TYPES[fmt], self._config)
        return ExportResult(key=key, records=records, puts=_upload_requests(size), gets=batch_count)


def _jsonl(path: str, parts: Iterator[list[dict[str, Any]]], step_ids: list[str]) -> int:
    count = 0
    with open(path, "w", encoding="utf-8") as out:
        for part in parts:
            for record in part:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
    return count


FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formula(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run: text starting with a formula trigger gets a ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def csv_columns(step_ids: Sequence[str]) -> list[str]:
    return [*BASE_COLUMNS, *(f"steps.{step}.{field}" for step in step_ids for field in STEP_FIELDS)]


def _csv(path: str, parts: Iterator[list[dict[str, Any]]], step_ids: list[str]) -> int:
    count = 0
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(csv_columns(step_ids))
        for part in parts:
            for record in part:
                row = [record[column] for column in BASE_COLUMNS]
                row += [record["steps"][step][field] for step in step_ids for field in STEP_FIELDS]
                writer.writerow([neutralise_formula(cell) for cell in row])
                count += 1
    return count


def _parquet(path: str, parts: Iterator[list[dict[str, Any]]], step_ids: list[str]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    step_type = pa.struct([(field, pa.string()) for field in STEP_FIELDS])
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("job_id", pa.string()),
            ("seed_index", pa.int64()),
            ("created_at", pa.string()),
            ("steps", pa.struct([(step, step_type) for step in step_ids])),
        ]
    )
    count = 0
    with pq.ParquetWriter(path, schema, compression="snappy") as writer:
        for part in parts:
            if not part:
                continue
            rows = [{**{c: r[c] for c in BASE_COLUMNS}, "steps": r["steps"]} for r in part]
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
            count += len(part)
    return count
