"""Export options shared by the API and the worker: file splitting, compression per format, keys."""

from __future__ import annotations

import pytest

from functions.common.exports import (
    Compression,
    ExportConfig,
    compression_error,
    export_file_key,
    records_per_file,
)
from functions.common.storage import OutputFormat


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [(None, None), ("none", None), ("records:1", 1), ("records:250", 250), ("records:1000000", 1_000_000)],
)
def test_records_per_file(strategy: str | None, expected: int | None) -> None:
    assert records_per_file(strategy) == expected


@pytest.mark.parametrize("strategy", ["records:0", "records:1000001", "records:", "by-author", "records:01"])
def test_an_unknown_strategy_names_the_allowed_ones(strategy: str) -> None:
    with pytest.raises(ValueError, match=r"`none` \(one file\) or `records:N`"):
        records_per_file(strategy)


def test_each_format_defaults_to_its_first_compression_and_refuses_the_others() -> None:
    default = ExportConfig()
    assert default.compression_for(OutputFormat.JSONL) is Compression.NONE
    assert default.compression_for(OutputFormat.PARQUET) is Compression.SNAPPY
    assert compression_error(OutputFormat.CSV, ExportConfig(compression=Compression.GZIP)) is None
    assert compression_error(OutputFormat.PARQUET, ExportConfig(compression=Compression.GZIP)) == (
        "export_config.compression 'gzip' is not available for PARQUET; allowed: snappy, zstd, none"
    )


def test_file_keys_are_numbered_from_one_and_gzip_adds_its_suffix() -> None:
    assert export_file_key("j", OutputFormat.CSV, Compression.NONE) == "jobs/j/exports/dataset.csv"
    assert (
        export_file_key("j", OutputFormat.JSONL, Compression.GZIP, 1)
        == "jobs/j/exports/dataset-00001.jsonl.gz"
    )
    assert (
        export_file_key("j", OutputFormat.PARQUET, Compression.ZSTD, 12)
        == "jobs/j/exports/dataset-00012.parquet"
    )
