"""The S3 layout shared by the API and the worker (docs/data-model.md, "S3 bucket").

The worker writes a job's export where the download endpoint looks for it, so both take the keys
from here and from ``functions.common.exports`` (the export files).
"""

from __future__ import annotations

from enum import StrEnum


class OutputFormat(StrEnum):
    JSONL = "JSONL"
    PARQUET = "PARQUET"
    CSV = "CSV"

    @property
    def extension(self) -> str:
        return self.value.lower()


def seed_prefix(user_id: str) -> str:
    """Where a user's seed uploads live; nobody else's key may start with it."""
    return f"seed-data/{user_id}/"


def job_prefix(job_id: str) -> str:
    """Everything a job writes (outputs, checkpoint, errors, export); cleanup deletes it all."""
    return f"jobs/{job_id}/"
