"""Lifecycle under load: 30 jobs, MAX_RUNNING_JOBS=3, cancels at random moments.

RUNNING is sampled over the API the whole time and never exceeds 3; every job reaches a terminal
status within the bound; none is lost (all 30 are listed, each with exactly the status it ended in).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.e2e.conftest import MAX_RUNNING_JOBS, Runtime, create_job, create_template, upload_seed
from tests.support.remote import TERMINAL

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

JOBS = 30
CANCELS = 10
BOUND_SECONDS = 300.0


@contextmanager
def running_samples(client: Any) -> Iterator[list[int]]:
    """How many jobs the API lists as RUNNING, sampled every 0.1 s while the block runs."""
    samples: list[int] = []
    stop = threading.Event()

    def sample_running() -> None:
        while not stop.is_set():
            answer = client.get("/jobs", params={"status": "RUNNING", "limit": 100})
            if answer.status_code == 200:
                samples.append(len(answer.json()["jobs"]))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample_running, daemon=True)
    sampler.start()
    try:
        yield samples
    finally:
        stop.set()
        sampler.join(timeout=10)


def cancel_at_random_moments(user: Any, job_ids: list[str], rng: random.Random) -> dict[str, str]:
    """DELETE each job at a random moment: queued, running or already finished."""
    cancel_answers: dict[str, str] = {}
    for job_id in job_ids:
        time.sleep(rng.uniform(0, 1.5))
        answer = user.delete(f"/jobs/{job_id}")
        # 202 "Cancellation requested" (QUEUED/RUNNING), or "Deletion requested" when the job had
        # already finished; 409 when it finished while the cancel was being recorded.
        assert answer.status_code in (202, 409), answer.text
        cancel_answers[job_id] = answer.json().get("message", "") if answer.status_code == 202 else "409"
    return cancel_answers


def final_statuses(
    user: Any, job_ids: list[str], cancel_answers: dict[str, str], started: float
) -> dict[str, str]:
    """Poll every job until all are terminal (or deleted as asked) or the bound passes.

    A deletion is asynchronous: DELETE on a finished job answers 202 "Deletion requested" and the job
    stays readable, with its terminal status, until the cleanup state machine deletes the item (only
    then GET answers 404). So for such a job only the 404 is final; until then it must read terminal.
    """
    final: dict[str, str] = {}
    while time.monotonic() - started < BOUND_SECONDS and len(final) < len(job_ids):
        for job_id in set(job_ids) - set(final):
            status = polled_status(user, job_id, cancel_answers.get(job_id) == "Deletion requested")
            if status is not None:
                final[job_id] = status
        time.sleep(0.5)
    return final


def polled_status(user: Any, job_id: str, deletion_requested: bool) -> str | None:
    """The job's final status if it has one yet: DELETED (404) for a job deleted as asked, else the
    terminal status; None while it is still on its way."""
    answer = user.get(f"/jobs/{job_id}")
    if deletion_requested and answer.status_code == 404:
        return "DELETED"
    assert answer.status_code == 200, f"job {job_id} lost: {answer.status_code}"
    status: str = answer.json()["status"]
    if deletion_requested:
        assert status in TERMINAL, f"job {job_id} was deleted as finished but reads {status}"
        return None  # the cleanup has not deleted it yet
    return status if status in TERMINAL else None


def listed_statuses(user: Any) -> dict[str, str]:
    listed: dict[str, str] = {}
    cursor = None
    while True:
        params = {"limit": 100, **({"last_key": cursor} if cursor else {})}
        page = user.get("/jobs", params=params).json()
        listed.update({j["job_id"]: j["status"] for j in page["jobs"]})
        cursor = page.get("last_key")
        if not cursor:
            return listed


def expected_outcome(cancel_answer: str | None) -> tuple[str, ...]:
    """A cancel is honoured (CANCELLED) or loses the race to completion (COMPLETED); a job that had
    already finished was deleted as asked; every other job completed."""
    if cancel_answer is None:
        return ("COMPLETED",)
    if cancel_answer == "Deletion requested":
        return ("DELETED",)
    return ("CANCELLED", "COMPLETED")


def test_thirty_jobs_three_slots_random_cancels(runtime: Runtime) -> None:
    rng = random.Random(20261128)
    user = runtime.client("load-user")
    template_id = create_template(user)
    seed_key = upload_seed(user)

    with running_samples(runtime.client("load-user")) as samples:
        job_ids = [
            create_job(
                user, template_id, seed_key, num_records=rng.randint(10, 60), priority=rng.randint(1, 10)
            )
            for _ in range(JOBS)
        ]
        to_cancel = rng.sample(job_ids, CANCELS)
        started = time.monotonic()
        cancel_answers = cancel_at_random_moments(user, to_cancel, rng)
        final = final_statuses(user, job_ids, cancel_answers, started)

    unfinished = set(job_ids) - set(final)
    assert len(final) == JOBS, f"not ended (or deleted) within {BOUND_SECONDS:.0f} s: {unfinished}"
    assert samples, "the sampler saw nothing"
    assert max(samples) <= MAX_RUNNING_JOBS, f"RUNNING peaked at {max(samples)}"
    assert max(samples) >= 1
    for job_id in job_ids:
        answer = cancel_answers.get(job_id)
        assert final[job_id] in expected_outcome(answer), (job_id, answer, final[job_id])
    assert "CANCELLED" in final.values(), f"no cancel landed before completion: {cancel_answers}"
    # None lost: every job is listed, with the status it ended in, and stays there.
    listed = listed_statuses(user)
    assert {j: listed.get(j, "DELETED") for j in job_ids} == final


class _Answer:
    def __init__(self, status_code: int, body: dict[str, Any]) -> None:
        self.status_code = status_code
        self._body = body

    def json(self) -> dict[str, Any]:
        return self._body


class _ApiDuringCleanup:
    """GET /jobs/{id} as the API answers a finished job while its cleanup runs: the item is still
    there (200 COMPLETED) for the first ``reads_before_deleted`` reads, then 404."""

    def __init__(self, reads_before_deleted: int) -> None:
        self.reads_left = reads_before_deleted

    def get(self, path: str, params: dict[str, Any] | None = None) -> _Answer:
        if self.reads_left == 0:
            return _Answer(404, {"message": "Job not found"})
        self.reads_left -= 1
        return _Answer(200, {"job_id": path.rsplit("/", 1)[-1], "status": "COMPLETED"})


def test_a_job_deleted_as_finished_is_final_only_once_the_cleanup_deleted_it() -> None:
    """Regression: the poll took the COMPLETED read before the cleanup's delete as the job's end."""
    api = _ApiDuringCleanup(reads_before_deleted=1)

    final = final_statuses(api, ["job-1"], {"job-1": "Deletion requested"}, time.monotonic())

    assert final == {"job-1": "DELETED"}
    assert api.reads_left == 0
