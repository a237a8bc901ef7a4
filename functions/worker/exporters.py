"""The export: the committed parts of a job, in record order, streamed into its export files.

Parts are read one at a time (one S3 GET each, in batch order, so the records come out in the order
of their positions whichever worker or partition wrote them) and appended to a local temporary
file — for Parquet, one row group per part through ``pyarrow.parquet.ParquetWriter`` — which is
uploaded with a managed (multipart when large) upload. Memory holds at most one part.

Files (``partition_strategy``): ``none`` writes ``exports/dataset.<ext>``; ``records:N`` writes
``exports/dataset-00001.<ext>``, ``-00002`` … of N records each (the last may be shorter), each file
complete in itself (its own CSV header, its own Parquet footer). Options (``export_config``):
``compression`` — gzip for JSONL/CSV (``.gz`` appended to the name), snappy/zstd/none inside
Parquet; ``include_prompts: false`` drops every step's ``prompt``.

Columns: JSONL keeps the record shape ``{id, job_id, seed_index, created_at, steps}``, one compact
JSON object a line (with every field kept, the parts' lines are copied as they are); Parquet keeps
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
import gzip
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

from boto3.s3.transfer import TransferConfig

from functions.common.exports import Compression, ExportConfig, export_file_key, records_per_file
from functions.common.storage import OutputFormat
from functions.worker.repository import OutputStore

CHUNK_BYTES = 8 * 1024 * 1024
BASE_COLUMNS = ("id", "job_id", "seed_index", "created_at")
STEP_FIELDS = ("prompt", "output", "model")
CONTENT_TYPES = {
    OutputFormat.JSONL: "application/x-ndjson",
    OutputFormat.CSV: "text/csv",
    OutputFormat.PARQUET: "application/vnd.apache.parquet",
}
GZIP_CONTENT_TYPE = "application/gzip"


@dataclass(frozen=True)
class ExportOptions:
    """What the job asked for; defaults are one uncompressed file with prompts."""

    partition_strategy: str | None = None
    config: ExportConfig = field(default_factory=ExportConfig)

    @classmethod
    def of(cls, partition_strategy: str | None, export_config: dict[str, Any] | None) -> ExportOptions:
        return cls(partition_strategy, ExportConfig.model_validate(export_config or {}))


@dataclass(frozen=True)
class ExportResult:
    keys: list[str]
    records: int
    puts: int
    gets: int

    @property
    def key(self) -> str:
        return self.keys[0] if self.keys else ""


def _upload_requests(size: int) -> int:
    """PUT-class requests of a managed upload: one PUT, or create + parts + complete."""
    if size < CHUNK_BYTES:
        return 1
    return math.ceil(size / CHUNK_BYTES) + 2


def step_fields(include_prompts: bool) -> tuple[str, ...]:
    return STEP_FIELDS if include_prompts else STEP_FIELDS[1:]


class Exporter:
    def __init__(self, outputs: OutputStore, temp_dir: str | None = None) -> None:
        self._outputs = outputs
        self._temp_dir = temp_dir
        self._config = TransferConfig(multipart_threshold=CHUNK_BYTES, multipart_chunksize=CHUNK_BYTES)

    def export(
        self,
        job_id: str,
        fmt: OutputFormat,
        batch_indexes: Sequence[int],
        step_ids: Sequence[str],
        options: ExportOptions | None = None,
        on_progress: Callable[[], None] = lambda: None,
    ) -> ExportResult:
        """Write the parts of ``batch_indexes`` (ascending) into the export files; nothing when empty."""
        options = options or ExportOptions()
        fields = step_fields(options.config.include_prompts)
        compression = options.config.compression_for(fmt)
        per_file = records_per_file(options.partition_strategy)
        records: Iterator[dict[str, Any] | bytes]
        if fmt is OutputFormat.JSONL and fields == STEP_FIELDS:
            # A part's lines are the export's lines already: copied as they are, not parsed and
            # encoded again (that was most of the export's CPU).
            records = (
                line
                for batch_index in batch_indexes
                for line in self._part_lines(job_id, batch_index, on_progress)
            )
        else:
            records = (
                _trim(record, fields)
                for batch_index in batch_indexes
                for record in self._part(job_id, batch_index, on_progress)
            )
        keys: list[str] = []
        count = puts = 0
        with tempfile.TemporaryDirectory(dir=self._temp_dir) as directory:
            for number, chunk in enumerate(_chunks(records, per_file), start=1):
                key = export_file_key(job_id, fmt, compression, None if per_file is None else number)
                path = os.path.join(directory, os.path.basename(key))
                count += _WRITERS[fmt](path, chunk, list(step_ids), fields, compression)
                puts += _upload_requests(os.path.getsize(path))
                content_type = GZIP_CONTENT_TYPE if compression is Compression.GZIP else CONTENT_TYPES[fmt]
                keys.append(self._outputs.upload_export(key, path, content_type, self._config))
                os.remove(path)  # one file on local disk at a time
        return ExportResult(keys=keys, records=count, puts=puts, gets=len(batch_indexes))

    def _part(
        self, job_id: str, batch_index: int, on_progress: Callable[[], None]
    ) -> Iterator[dict[str, Any]]:
        yield from self._outputs.iter_part(job_id, batch_index)
        on_progress()

    def _part_lines(self, job_id: str, batch_index: int, on_progress: Callable[[], None]) -> Iterator[bytes]:
        yield from self._outputs.iter_part_lines(job_id, batch_index)
        on_progress()


def _trim(record: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    if fields == STEP_FIELDS:
        return record
    steps = {sid: {f: step[f] for f in fields} for sid, step in record["steps"].items()}
    return {**record, "steps": steps}


_Row = TypeVar("_Row")


def _chunks(records: Iterator[_Row], size: int | None) -> Iterator[Iterator[_Row]]:
    """The record stream as consecutive runs of ``size`` (one run when None); none when empty."""
    first = next(records, None)
    while first is not None:
        head = first

        def run(head: _Row = head) -> Iterator[_Row]:
            yield head
            taken = 1
            while size is None or taken < size:
                record = next(records, None)
                if record is None:
                    return
                yield record
                taken += 1

        yield run()
        first = next(records, None)


def _open_text(path: str, compression: Compression, newline: str | None = None) -> IO[str]:
    if compression is Compression.GZIP:
        return gzip.open(path, "wt", encoding="utf-8", newline=newline)
    return open(path, "w", encoding="utf-8", newline=newline)


def _jsonl(
    path: str,
    records: Iterator[dict[str, Any] | bytes],
    step_ids: list[str],
    fields: tuple[str, ...],
    compression: Compression,
) -> int:
    """One compact JSON object a line: a part's line as it is, or a trimmed record encoded."""
    count = 0
    with gzip.open(path, "wb") if compression is Compression.GZIP else open(path, "wb") as out:
        for record in records:
            if not isinstance(record, bytes):
                record = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
            out.write(record + b"\n")
            count += 1
    return count


FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formula(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run: text starting with a formula trigger gets a ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def csv_columns(step_ids: Sequence[str], fields: Sequence[str] = STEP_FIELDS) -> list[str]:
    return [*BASE_COLUMNS, *(f"steps.{step}.{field}" for step in step_ids for field in fields)]


def _csv(
    path: str,
    records: Iterator[dict[str, Any]],
    step_ids: list[str],
    fields: tuple[str, ...],
    compression: Compression,
) -> int:
    count = 0
    with _open_text(path, compression, newline="") as out:
        writer = csv.writer(out)
        writer.writerow(csv_columns(step_ids, fields))
        for record in records:
            row = [record[column] for column in BASE_COLUMNS]
            row += [record["steps"][step][field] for step in step_ids for field in fields]
            writer.writerow([neutralise_formula(cell) for cell in row])
            count += 1
    return count


PARQUET_ROWS_PER_GROUP = 10_000


def _parquet(
    path: str,
    records: Iterator[dict[str, Any]],
    step_ids: list[str],
    fields: tuple[str, ...],
    compression: Compression,
) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    step_type = pa.struct([(f, pa.string()) for f in fields])
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
    rows: list[dict[str, Any]] = []
    with pq.ParquetWriter(path, schema, compression=compression.value) as writer:
        for record in records:
            rows.append({**{c: record[c] for c in BASE_COLUMNS}, "steps": record["steps"]})
            if len(rows) == PARQUET_ROWS_PER_GROUP:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                count += len(rows)
                rows = []
        if rows:
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
            count += len(rows)
    return count


_WRITERS: dict[OutputFormat, Callable[..., int]] = {
    OutputFormat.JSONL: _jsonl,
    OutputFormat.CSV: _csv,
    OutputFormat.PARQUET: _parquet,
}
