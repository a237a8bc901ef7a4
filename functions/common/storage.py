"""The S3 layout shared by the API and the worker (docs/data-model.md, "S3 bucket").

The worker writes a job's export where the download endpoint looks for it, so both take the keys
from here and from ``functions.common.exports`` (the export files).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


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


# A seed folder is read as one stream of its files; one ListObjectsV2 page lists them all.
MAX_SEED_FOLDER_FILES = 1000
S3_URI_SCHEME = "s3://"


class SeedPathError(ValueError):
    """A ``seed_data_path`` that is not the caller's (another bucket, outside ``seed-data/{you}/``)."""


def seed_location(path: str, user_id: str, bucket: str) -> str:
    """The key (or folder, ending in ``/``) that a ``seed_data_path`` names in this deployment's bucket.

    Accepted forms: ``seed-data/{you}/name``, ``s3://{bucket}/seed-data/{you}/name`` and folders
    ``seed-data/{you}/dir/`` (your whole ``seed-data/{you}/`` too). Raises ``SeedPathError`` for
    another bucket or anything outside the caller's prefix (``..`` and empty segments included).
    """
    key = path
    if path.startswith(S3_URI_SCHEME):
        named_bucket, _, key = path[len(S3_URI_SCHEME) :].partition("/")
        if named_bucket != bucket:
            raise SeedPathError("seed_data_path names another bucket than this deployment's")
    prefix = seed_prefix(user_id)
    if not key.startswith(prefix):
        raise SeedPathError("seed_data_path must be under seed-data/{your user id}/")
    segments = key[len(prefix) :].split("/")
    if any(segment in ("", ".", "..") for segment in segments[:-1]) or segments[-1] in (".", ".."):
        raise SeedPathError("seed_data_path must not contain empty, '.' or '..' segments")
    return key


class SeedFolderTooLargeError(ValueError):
    """A seed folder with more than ``MAX_SEED_FOLDER_FILES`` objects."""


def is_seed_folder(key: str) -> bool:
    return key.endswith("/")


def list_seed_files(s3_client: Any, bucket: str, folder: str) -> list[str]:
    """Every object under ``folder`` in key order (folder markers, keys ending in ``/``, skipped).
    Raises ``SeedFolderTooLargeError`` past ``MAX_SEED_FOLDER_FILES`` objects."""
    answer = s3_client.list_objects_v2(Bucket=bucket, Prefix=folder, MaxKeys=MAX_SEED_FOLDER_FILES)
    if answer.get("IsTruncated"):
        raise SeedFolderTooLargeError(f"a seed folder holds at most {MAX_SEED_FOLDER_FILES} files")
    return sorted(item["Key"] for item in answer.get("Contents", []) if not item["Key"].endswith("/"))
