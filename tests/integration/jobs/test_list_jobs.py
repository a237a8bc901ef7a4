"""GET /jobs: newest first, full pages with and without a status filter, opaque and checked cursors."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from functions.common.cursor import encode_cursor
from tests.integration.jobs.support import job_body, jobs_api, make_template, set_status, upload_seed

pytestmark = pytest.mark.integration


def _create_many(aws: Any, user: str, count: int) -> list[str]:
    template_id = make_template(aws, user)
    seed = upload_seed(aws, user)
    ids = []
    for i in range(count):
        answer = jobs_api.post("/jobs", user=user, body=job_body(template_id, seed, num_records=i + 1))
        assert answer.status == 201
        ids.append(answer.body["job_id"])
    return ids


def _walk(user: str, limit: int, status: str | None = None) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    for _ in range(100):  # bounded
        answer = jobs_api.get(
            "/jobs", user=user, query={"limit": limit, "status": status, "last_key": cursor}
        )
        assert answer.status == 200, answer.body
        pages.append(answer.body["jobs"])
        cursor = answer.body.get("last_key")
        if cursor is None:
            return pages
    raise AssertionError("pagination did not end")


@pytest.fixture
def forty_five(aws: Any) -> list[str]:
    """45 jobs of user-1 (oldest first) and 3 of user-2 that must never show up."""
    ids = _create_many(aws, "user-1", 45)
    _create_many(aws, "user-2", 3)
    return ids


def test_pages_over_45_jobs_newest_first(aws: Any, forty_five: list[str]) -> None:
    pages = _walk("user-1", limit=20)

    assert [len(p) for p in pages] == [20, 20, 5]
    listed = [job["job_id"] for page in pages for job in page]
    assert listed == list(reversed(forty_five))
    created = [job["created_at"] for page in pages for job in page]
    assert created == sorted(created, reverse=True)

    # No cursor when the last page is exactly full.
    assert [len(p) for p in _walk("user-1", limit=15)] == [15, 15, 15]
    # One page holds them all.
    assert [len(p) for p in _walk("user-1", limit=100)] == [45]

    # Default limit 20, and the summary fields.
    answer = jobs_api.get("/jobs", user="user-1")
    assert answer.status == 200
    assert len(answer.body["jobs"]) == 20
    assert isinstance(answer.body["last_key"], str)
    newest = answer.body["jobs"][0]
    assert newest == {
        "job_id": forty_five[-1],
        "status": "QUEUED",
        "template_id": newest["template_id"],
        "created_at": newest["created_at"],
        "updated_at": newest["created_at"],
        "records_generated": 0,
        "cost_estimate": 0,
        "budget_limit": 25.5,
    }
    assert '"cost_estimate":0,"budget_limit":25.50}' in answer.text

    # user-2 sees only their own 3.
    other = _walk("user-2", limit=100)
    assert [len(p) for p in other] == [3]
    assert not {j["job_id"] for j in other[0]} & set(forty_five)
    assert _walk("user-3", limit=5) == [[]]


def test_status_filter_gives_full_pages(aws: Any, forty_five: list[str]) -> None:
    # Every third job RUNNING (15 of them), spread among 30 QUEUED ones.
    running = forty_five[::3]
    for job_id in running:
        set_status(aws, job_id, "RUNNING")

    running_pages = _walk("user-1", limit=4, status="RUNNING")
    queued_pages = _walk("user-1", limit=7, status="QUEUED")

    assert [len(p) for p in running_pages] == [4, 4, 4, 3]
    assert [j["job_id"] for p in running_pages for j in p] == list(reversed(running))
    assert all(j["status"] == "RUNNING" for p in running_pages for j in p)
    queued = [j for j in forty_five if j not in running]
    assert [len(p) for p in queued_pages] == [7, 7, 7, 7, 2]
    assert [j["job_id"] for p in queued_pages for j in p] == list(reversed(queued))
    assert _walk("user-1", limit=10, status="COMPLETED") == [[]]


@pytest.mark.parametrize("limit", [0, 101, -1, "ten"])
def test_limit_out_of_range_is_400(aws: Any, limit: Any) -> None:
    answer = jobs_api.get("/jobs", query={"limit": limit})
    assert answer.status == 400


def test_unknown_status_is_400(aws: Any) -> None:
    assert jobs_api.get("/jobs", query={"status": "PAUSED"}).status == 400


def test_without_claims_is_401(aws: Any) -> None:
    answer = jobs_api.get("/jobs", user=None)
    assert answer.status == 401
    assert answer.body == {"error": "Unauthorized"}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_tampered_and_foreign_cursors_are_400(aws: Any) -> None:
    ids = _create_many(aws, "user-1", 3)
    other = _create_many(aws, "user-2", 3)
    first = jobs_api.get("/jobs", user="user-1", query={"limit": 1})
    good = first.body["last_key"]
    decoded = json.loads(base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)))
    assert set(decoded) == {"job_id", "user_id", "created_at"}
    status_cursor = jobs_api.get("/jobs", user="user-1", query={"limit": 1, "status": "QUEUED"}).body[
        "last_key"
    ]
    user2_cursor = jobs_api.get("/jobs", user="user-2", query={"limit": 1}).body["last_key"]

    bad_cursors = [
        "not-base64-!!!",
        _b64(b"not json"),
        _b64(b"[1, 2]"),
        _b64(b"null"),
        good[:-3],
        encode_cursor({"job_id": ids[0]}),  # missing keys
        encode_cursor({**decoded, "extra": "x"}),
        encode_cursor({**decoded, "user_id": "user-2"}),  # forged owner
        encode_cursor({**decoded, "job_id": 7}),
        encode_cursor({**decoded, "created_at": 12345}),
        encode_cursor({**decoded, "job_id": "x" * 3000}),
        encode_cursor({**decoded, "job_id": "not-a-uuid"}),
        user2_cursor,  # another user's real cursor
        status_cursor,  # a cursor of another listing (status filter) on the unfiltered one
        "A" * 3000,
    ]
    for cursor in bad_cursors:
        answer = jobs_api.get("/jobs", user="user-1", query={"limit": 1, "last_key": cursor})
        assert answer.status == 400, (cursor, answer.body)
        assert answer.body == {"error": "Invalid pagination cursor"}

    # The unfiltered cursor is no good for a filtered listing either, nor for another status.
    for status in ("QUEUED", "RUNNING"):
        answer = jobs_api.get("/jobs", user="user-1", query={"status": status, "last_key": good})
        assert answer.status == 400
    answer = jobs_api.get("/jobs", user="user-1", query={"status": "RUNNING", "last_key": status_cursor})
    assert answer.status == 400
    # And nothing leaked: the good cursor still works and user-2 is untouched.
    assert jobs_api.get("/jobs", user="user-1", query={"last_key": good}).status == 200
    assert len(other) == 3
