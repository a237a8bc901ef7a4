"""How a job's export is written: files (``partition_strategy``) and options (``export_config``).

Shared by the jobs API (which validates what a client sends) and the worker (which writes the
files). docs/data-model.md ("S3 bucket") names the keys.
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import ConfigDict, Field

from functions.common.models import DeferredModel
from functions.common.storage import OutputFormat, job_prefix

_RECORDS = re.compile(r"records:([1-9][0-9]{0,5}|1000000)")
PARTITION_STRATEGY_PATTERN = r"^(none|records:([1-9][0-9]{0,5}|1000000))$"
PARTITION_STRATEGIES = "`none` (one file) or `records:N` (files of N records, 1 <= N <= 1000000, numbered)"


class Compression(StrEnum):
    NONE = "none"
    GZIP = "gzip"
    SNAPPY = "snappy"
    ZSTD = "zstd"


# What each output format can be compressed with; the first is the default.
COMPRESSIONS: dict[OutputFormat, tuple[Compression, ...]] = {
    OutputFormat.JSONL: (Compression.NONE, Compression.GZIP),
    OutputFormat.CSV: (Compression.NONE, Compression.GZIP),
    OutputFormat.PARQUET: (Compression.SNAPPY, Compression.ZSTD, Compression.NONE),
}


class ExportConfig(DeferredModel):
    """``export_config`` of a job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    compression: Compression | None = Field(
        default=None,
        description="`none` or `gzip` for JSONL and CSV (default `none`); `snappy`, `zstd` or `none` for "
        "PARQUET (default `snappy`).",
    )
    include_prompts: bool = Field(
        default=True, description="Keep each step's rendered prompt in the export (false: outputs only)."
    )

    def compression_for(self, fmt: OutputFormat) -> Compression:
        return self.compression or COMPRESSIONS[fmt][0]


def compression_error(fmt: OutputFormat, config: ExportConfig) -> str | None:
    """Why this compression cannot be used with this format, or None."""
    allowed = COMPRESSIONS[fmt]
    if config.compression is None or config.compression in allowed:
        return None
    names = ", ".join(c.value for c in allowed)
    return (
        f"export_config.compression {config.compression.value!r} is not available for {fmt.value}; "
        f"allowed: {names}"
    )


def records_per_file(partition_strategy: str | None) -> int | None:
    """Records per export file for ``records:N``; None for ``none`` (one file) or no strategy."""
    if not partition_strategy or partition_strategy == "none":
        return None
    match = _RECORDS.fullmatch(partition_strategy)
    if match is None:
        raise ValueError(f"partition_strategy must be {PARTITION_STRATEGIES}")
    return int(match.group(1))


def exports_prefix(job_id: str) -> str:
    return f"{job_prefix(job_id)}exports/"


def export_file_key(
    job_id: str, fmt: OutputFormat, compression: Compression, number: int | None = None
) -> str:
    """``dataset.jsonl`` (one file) or ``dataset-00001.jsonl`` (numbered from 1); ``.gz`` when gzipped."""
    name = "dataset" if number is None else f"dataset-{number:05d}"
    suffix = ".gz" if compression is Compression.GZIP else ""
    return f"{exports_prefix(job_id)}{name}.{fmt.extension}{suffix}"
