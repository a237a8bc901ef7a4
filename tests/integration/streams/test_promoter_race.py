"""50 jobs, MAX_RUNNING_JOBS=3, promoter invocations racing from threads.

Every Jobs stream batch is handed to two promoter threads at once (the original delivery and a
replay racing it), while a stand-in for the lifecycle state machine runs and finishes the jobs the
promoter started, releasing their slots, which triggers the promoter again. A sampler reads the
tables throughout. Bounded: 50 jobs, 4 promoter threads, a 90 s deadline (a run takes seconds).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from typing import Any

import pytest

from functions.common.aws import client
from functions.common.settings import load_settings
from functions.promoter.handler import lambda_handler
from functions.promoter.models import PromoterSettings
from tests.integration.streams.conftest import deliver
from tests.integration.streams.support import (
    LifecycleStandIn,
    StreamTap,
    atomic_requests,
    batches,
    count_with_status,
    executions_by_name,
    jobs_by_status,
    queue_job,
    queued_job_ids,
    slot_holders,
)

pytestmark = pytest.mark.integration

JOBS = 50
LIMIT = 3
PROMOTER_THREADS = 4
DEADLINE_SECONDS = 90
RUN_SECONDS = 0.03  # how long the stand-in keeps a job RUNNING


class _Run:
    def __init__(self) -> None:
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def fail(self, message: str) -> None:
        with self.lock:
            self.errors.append(message)
        self.stop.set()


def _pump(run: _Run, tap: StreamTap, work: queue.Queue[list[dict[str, Any]]]) -> None:
    """The event source mapping: batches of up to 5 records, each delivered twice, concurrently."""
    while not run.stop.is_set():
        for batch in batches(tap.read(), 5):
            work.put(batch)
            work.put(batch)
        time.sleep(0.005)


def _promoter(run: _Run, tap: StreamTap, work: queue.Queue[list[dict[str, Any]]]) -> None:
    while not run.stop.is_set():
        try:
            batch = work.get(timeout=0.05)
        except queue.Empty:
            continue
        try:
            answer = deliver(lambda_handler, batch, tap)
        except Exception as error:  # a crash must fail the test, not hang it
            run.fail(f"promoter raised {error!r}")
            return
        if answer["batchItemFailures"]:
            run.fail(f"promoter reported failures {answer}")


def _lifecycle(run: _Run, sfn: Any, arn: str, stand_in: LifecycleStandIn, marked: Counter[str]) -> None:
    """Plays the lifecycle state machine (production: statemachines/, tests/statemachines/):
    each started execution marks its job RUNNING, works briefly, completes and releases its slot."""
    running_since: dict[str, float] = {}
    seen: set[str] = set()
    while not run.stop.is_set():
        for job_id in executions_by_name(sfn, arn):
            if job_id in seen:
                continue
            seen.add(job_id)
            if stand_in.mark_running(job_id):
                marked[job_id] += 1
                running_since[job_id] = time.monotonic()
            else:
                run.fail(f"{job_id} was started but could not be marked RUNNING")
        now = time.monotonic()
        for job_id, since in list(running_since.items()):
            if now - since >= RUN_SECONDS:
                stand_in.finish(job_id)
                del running_since[job_id]
        time.sleep(0.005)


def _sampler(run: _Run, db: Any, samples: list[tuple[int, int]]) -> None:
    while not run.stop.is_set():
        running = count_with_status(db, "RUNNING")
        holders = len(slot_holders(db))
        samples.append((running, holders))
        if running > LIMIT or holders > LIMIT:
            run.fail(f"limit exceeded: {running} RUNNING, {holders} holders")
        time.sleep(0.01)


def test_racing_promoters_never_exceed_the_limit_and_promote_every_job_once(
    aws: Any, lifecycle: str, jobs_stream: StreamTap, settings_env: Any
) -> None:
    settings_env(max_running_jobs=LIMIT)
    # Clients are made once, here: creating boto3 clients from several threads is not safe.
    db = aws.client("dynamodb")
    sfn = aws.client("stepfunctions")
    sampler_db = aws.client("dynamodb")
    with atomic_requests():
        job_ids = [queue_job(db, priority=1 + i % 10, seconds=i) for i in range(JOBS)]
        # Warm what the handler builds lazily (its clients and settings), as a first invocation would.
        client("dynamodb"), client("stepfunctions"), load_settings(PromoterSettings)

        run = _Run()
        work: queue.Queue[list[dict[str, Any]]] = queue.Queue()
        marked: Counter[str] = Counter()
        samples: list[tuple[int, int]] = []
        threads = [
            threading.Thread(target=_pump, args=(run, jobs_stream, work), name="pump"),
            threading.Thread(target=_lifecycle, args=(run, sfn, lifecycle, LifecycleStandIn(db), marked)),
            threading.Thread(target=_sampler, args=(run, sampler_db, samples), name="sampler"),
        ] + [
            threading.Thread(target=_promoter, args=(run, jobs_stream, work), name=f"promoter-{n}")
            for n in range(PROMOTER_THREADS)
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + DEADLINE_SECONDS
        try:
            while time.monotonic() < deadline and not run.stop.is_set():
                if count_with_status(db, "COMPLETED") == JOBS:
                    break
                time.sleep(0.1)
        finally:
            run.stop.set()
            for thread in threads:
                thread.join(timeout=10)
        assert not any(thread.is_alive() for thread in threads)

        assert run.errors == []
        statuses = jobs_by_status(db)
        assert set(statuses) == {"COMPLETED"}
        assert sorted(statuses["COMPLETED"]) == sorted(job_ids)
        # Promoted exactly once: one execution per job, each job marked RUNNING once; none lost.
        assert executions_by_name(sfn, lifecycle) == dict.fromkeys(job_ids, 1)
        assert marked == Counter(dict.fromkeys(job_ids, 1))
        assert queued_job_ids(db) == []
        assert slot_holders(db) == set()
        # The limit held at every sample, and the slots were really used.
        assert len(samples) > 20
        assert max(running for running, _ in samples) <= LIMIT
        assert max(holders for _, holders in samples) == LIMIT
