"""Seed-data objects in S3: presigned uploads and streamed reads (``seed-data/{user_id}/{name}``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from functions.common.storage import list_seed_files

READ_CHUNK_BYTES = 256 * 1024


@dataclass
class SeedObject:
    """An open seed object: its body as chunks (read lazily), its content type and size."""

    chunks: Iterator[bytes]
    content_type: str | None
    size: int
    close: Callable[[], None]


class SeedStore:
    def __init__(self, s3_client: Any, presign_client: Any, bucket: str) -> None:
        """``presign_client`` must sign with SigV4 (``Config(signature_version="s3v4")``)."""
        self._s3 = s3_client
        self._presign = presign_client
        self._bucket = bucket

    @property
    def bucket(self) -> str:
        return self._bucket

    def list_keys(self, folder: str) -> list[str]:
        """The seed files of a folder, in key order."""
        return list_seed_files(self._s3, self._bucket, folder)

    def presigned_put(self, key: str, content_type: str, expires_in: int) -> str:
        url: str = self._presign.generate_presigned_url(
            "put_object",
            Params={"Bucket": self._bucket, "Key": key, "ContentType": content_type},
            ExpiresIn=expires_in,
        )
        return url

    def presigned_post(self, key: str, content_type: str, max_bytes: int, expires_in: int) -> dict[str, Any]:
        post: dict[str, Any] = self._presign.generate_presigned_post(
            Bucket=self._bucket,
            Key=key,
            Fields={"Content-Type": content_type},
            Conditions=[{"Content-Type": content_type}, ["content-length-range", 1, max_bytes]],
            ExpiresIn=expires_in,
        )
        return post

    def open(self, key: str) -> SeedObject | None:
        """The object, streamed; None when it does not exist."""
        try:
            answer = self._s3.get_object(Bucket=self._bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        body = answer["Body"]
        return SeedObject(
            chunks=body.iter_chunks(chunk_size=READ_CHUNK_BYTES),
            content_type=answer.get("ContentType"),
            size=int(answer.get("ContentLength", 0)),
            close=body.close,
        )
