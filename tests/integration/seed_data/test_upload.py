"""POST /seed-data/upload against moto: key layout, sanitizing, presigned PUT and POST policy."""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pytest
import requests

from functions.common import settings as s
from functions.common.errors import BadRequestError
from functions.openapi import openapi_document
from functions.seed_data.handler import lambda_handler
from functions.seed_data.service import seed_filename
from tests.support.http import ApiClient

pytestmark = pytest.mark.integration

api = ApiClient(lambda_handler)
BUCKET = s.BucketSettings().bucket_name
MAX_BYTES = s.UploadSettings().upload_max_bytes


def upload(filename: str, content_type: str | None = None, user: str | None = "user-1") -> Any:
    payload: dict[str, Any] = {"filename": filename}
    if content_type is not None:
        payload["content_type"] = content_type
    return api.post("/seed-data/upload", user=user, body=payload)


def test_upload_answers_a_signed_put_and_a_post_form_under_the_callers_prefix(aws: Any) -> None:
    answer = upload("authors.jsonl")
    assert answer.status == 200
    body = answer.body
    assert body["s3_key"] == "seed-data/user-1/authors.jsonl"
    assert body["expires_in"] == 900
    assert body["content_type"] == "application/x-ndjson"
    assert body["max_bytes"] == MAX_BYTES

    put = urlparse(body["upload_url"])
    assert unquote(put.path).endswith("seed-data/user-1/authors.jsonl")
    query = parse_qs(put.query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["900"]
    assert "content-type" in query["X-Amz-SignedHeaders"][0].split(";")

    form = body["upload_form"]
    fields = form["fields"]
    assert fields["key"] == "seed-data/user-1/authors.jsonl"
    assert fields["Content-Type"] == "application/x-ndjson"
    assert fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    policy = json.loads(base64.b64decode(fields["policy"]))
    assert {"Content-Type": "application/x-ndjson"} in policy["conditions"]
    assert ["content-length-range", 1, MAX_BYTES] in policy["conditions"]
    assert {"key": "seed-data/user-1/authors.jsonl"} in policy["conditions"]


def test_the_presigned_put_stores_the_object_with_its_content_type(aws: Any) -> None:
    body = upload("seed.csv").body
    sent = requests.put(
        body["upload_url"], data=b"a,b\n1,2\n", headers={"Content-Type": "text/csv"}, timeout=10
    )
    assert sent.status_code == 200
    head = aws.client("s3").head_object(Bucket=BUCKET, Key=body["s3_key"])
    assert head["ContentType"] == "text/csv"
    assert head["ContentLength"] == 8


@pytest.mark.parametrize(
    ("filename", "content_type", "key_name", "expected_type"),
    [
        ("my authors (v2).json", None, "my authors (v2).json", "application/json"),
        ("données.csv", None, "données.csv", "text/csv"),
        ("e\u0301t\u00e9.jsonl", None, "\u00e9t\u00e9.jsonl", "application/x-ndjson"),  # kept, as NFC
        ("文件.json", None, "文件.json", "application/json"),
        ("seed", "application/json", "seed", "application/json"),
        ("0", "text/csv", "0", "text/csv"),
        ("seed.ndjson", "application/x-ndjson", "seed.ndjson", "application/x-ndjson"),
        ("x" * 250 + ".json", None, "x" * 250 + ".json", "application/json"),
    ],
)
def test_filenames_are_kept_as_one_segment(
    aws: Any, filename: str, content_type: str | None, key_name: str, expected_type: str
) -> None:
    answer = upload(filename, content_type)
    assert answer.status == 200, answer.body
    assert answer.body["s3_key"] == f"seed-data/user-1/{key_name}"
    assert answer.body["content_type"] == expected_type


def test_different_unicode_names_never_share_a_key(aws: Any) -> None:
    # Both used to become "__.json" and silently overwrite each other.
    keys = {upload(name).body["s3_key"] for name in ("文件.json", "数据.json", "__.json")}
    assert keys == {"seed-data/user-1/文件.json", "seed-data/user-1/数据.json", "seed-data/user-1/__.json"}


@pytest.mark.parametrize(
    ("filename", "content_type", "message"),
    [
        ("../other-user/x.json", None, "path separators or '..'"),
        ("a/b.json", None, "path separators"),
        ("a\\b.json", None, "path separators"),
        ("x..json", None, "'..'"),
        ("\uff0e\uff0e\uff0fx.json", None, "path separators"),  # a fullwidth slash looks like one
        (".hidden.json", None, "start with '.'"),
        ("bad\x00name.json", None, "control or invisible"),
        ("evil\u202enosj.csv", None, "control or invisible"),  # right-to-left override
        ("   ", None, "empty"),
        (" lead.json", None, "start or end with a space"),
        ("a<b>.json", None, "must not start or end with a space, nor contain"),
        ("x" * 252 + ".json", None, "longer than 255"),
        ("notes.txt", None, "Name the file"),
        ("0", None, "Name the file"),
        ("seed.csv", "application/json", "does not match"),
    ],
)
def test_unsafe_or_formatless_names_are_a_400(
    aws: Any, filename: str, content_type: str | None, message: str
) -> None:
    answer = upload(filename, content_type)
    assert answer.status == 400
    assert message in answer.body["error"]


def test_the_documented_pattern_is_the_rule_the_service_applies() -> None:
    pattern = re.compile(
        openapi_document()["components"]["schemas"]["UploadRequest"]["properties"]["filename"]["pattern"]
    )
    for name in ("文件.json", "my authors (v2).json", "0", "a" * 255):
        assert pattern.search(name)
        assert seed_filename(name) == name
    for name in ("a..b", ".a", "a ", " a", "a/b", "a\u202eb", "a" * 256, "a`b", "a\u1fefb"):
        assert not pattern.search(name)
        with pytest.raises(BadRequestError):
            seed_filename(name)


@pytest.mark.parametrize(
    "payload", [{}, {"filename": ""}, {"filename": "a.json", "content_type": "image/png"}, {"filename": 5}]
)
def test_a_malformed_upload_request_is_a_400(aws: Any, payload: dict[str, Any]) -> None:
    assert api.post("/seed-data/upload", user="user-1", body=payload).status == 400


def test_upload_needs_a_caller(aws: Any) -> None:
    answer = upload("a.json", user=None)
    assert answer.status == 401
    assert answer.body == {"error": "Unauthorized"}
