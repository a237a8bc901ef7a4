"""boto3 clients and resources, created once per process and reused across invocations.

Tests run in-process against moto, so clients are built lazily (after moto is active) and
``reset_clients()`` forgets them between tests.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})


@cache
def client(service: str) -> Any:
    return boto3.client(service, config=_CONFIG)  # type: ignore[call-overload]


@cache
def resource(service: str) -> Any:
    return boto3.resource(service, config=_CONFIG)  # type: ignore[call-overload]


@cache
def s3_presign_client() -> Any:
    """The S3 client for presigned URLs and POST policies: always SigV4, so signed headers such as the
    content type are enforced. Presigning needs no network, so one client per process serves all."""
    return boto3.client("s3", config=_CONFIG.merge(Config(signature_version="s3v4")))


def reset_clients() -> None:
    client.cache_clear()
    resource.cache_clear()
    s3_presign_client.cache_clear()
