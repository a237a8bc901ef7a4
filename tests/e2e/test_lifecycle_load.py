"""Lifecycle under load: 30 jobs, MAX_RUNNING_JOBS=3, cancels at random moments.

RUNNING is sampled over the API the whole time and never exceeds 3; every job reaches a terminal
status within the bound; none is lost (all 30 are listed, each with exactly the status it ended in).
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from tests.e2e.conftest import (
    MAX_RUNNING_JOBS,
    TERMINAL,
    Runtime,
    create_job,
    create_template,
    upload_seed,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

JOBS = 30
CANCELS = 10
BOUND_SECONDS = 300.0


def test_thirty_jobs_three_slots_random_cancels(runtime: Runtime) -> None:
    rng = random.Random(20261128)
    user = runtime.client("load-user")
    sampler_client = runtime.client("load-user")
    template_id = create_template(user)
    seed_key = upload_seed(user)

    samples: list[int] = []
    stop = threading.Event()

    def sample_running() -> None:
        while not stop.is_set():
            answer = sampler_client.get("/jobs", params={"status": "RUNNING", "limit": 100})
            if answer.status_code == 200:
                samples.append(len(answer.json()["jobs"]))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample_running, daemon=True)
    sampler.start()
    try:
        job_ids = [
            create_job(
                user, template_id, seed_key, num_records=rng.randint(10, 60), priority=rng.randint(1, 10)
            )
            for _ in range(JOBS)
        ]
        to_cancel = rng.sample(job_ids, CANCELS)
        cancel_answers: dict[str, str] = {}
        started = time.monotonic()
        for job_id in to_cancel:
            time.sleep(rng.uniform(0, 1.5))  # random moments: queued, running or already finished
            answer = user.delete(f"/jobs/{job_id}")
            # 202 "Cancellation requested" (QUEUED/RUNNING), or "Deletion requested" when the job had
            # already finished; 409 when it finished while the cancel was being recorded.
            assert answer.status_code in (202, 409), answer.text
            cancel_answers[job_id] = answer.json().get("message", "") if answer.status_code == 202 else "409"

        final: dict[str, str] = {}
        while time.monotonic() - started < BOUND_SECONDS and len(final) < JOBS:
            for job_id in job_ids:
                if job_id in final:
                    continue
                answer = user.get(f"/jobs/{job_id}")
                if answer.status_code == 404 and cancel_answers.get(job_id) == "Deletion requested":
                    final[job_id] = "DELETED"
                    continue
                assert answer.status_code == 200, f"job {job_id} lost: {answer.status_code}"
                if answer.json()["status"] in TERMINAL:
                    final[job_id] = answer.json()["status"]
            time.sleep(0.5)
    finally:
        stop.set()
        sampler.join(timeout=10)

    assert len(final) == JOBS, f"not terminal within {BOUND_SECONDS:.0f} s: {set(job_ids) - set(final)}"
    assert samples, "the sampler saw nothing"
    assert max(samples) <= MAX_RUNNING_JOBS, f"RUNNING peaked at {max(samples)}"
    assert max(samples) >= 1

    # A cancel is honoured (CANCELLED) or loses the race to completion (COMPLETED); a job that had
    # already finished was deleted as asked; every other job completed.
    for job_id in job_ids:
        answer = cancel_answers.get(job_id)
        if answer is None:
            assert final[job_id] == "COMPLETED", (job_id, final[job_id])
        elif answer == "Deletion requested":
            assert final[job_id] == "DELETED", (job_id, final[job_id])
        else:
            assert final[job_id] in ("CANCELLED", "COMPLETED"), (job_id, answer, final[job_id])
    assert "CANCELLED" in final.values(), f"no cancel landed before completion: {cancel_answers}"

    # None lost: every job is listed, with the status it ended in, and stays there.
    listed: dict[str, str] = {}
    cursor = None
    while True:
        params = {"limit": 100, **({"last_key": cursor} if cursor else {})}
        page = user.get("/jobs", params=params).json()
        listed.update({j["job_id"]: j["status"] for j in page["jobs"]})
        cursor = page.get("last_key")
        if not cursor:
            break
    assert {j: listed.get(j, "DELETED") for j in job_ids} == final
