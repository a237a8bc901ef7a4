"""The worker process's loop against moto: the work queue, the task token, reporting, SIGTERM.

(How reporting is recorded: tests/integration/worker/conftest.py.)
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest

from functions.common.clock import now_iso
from functions.worker.main import install_signal_handlers
from functions.worker.reporter import TaskGone
from functions.worker.repository import JobStore
from functions.worker.runner import INVALID_WORK_ITEM, SHUTDOWN, WORKER_ERROR, Progress
from functions.worker.service import JOB_CANCELLED
from tests.integration.worker.conftest import (
    JOBS_TABLE,
    HookedProvider,
    RecordingReporter,
    World,
    make_loop,
    record_id_list,
    send,
    visible_messages,
)

pytestmark = pytest.mark.integration


def test_a_work_item_is_generated_reported_and_deleted(world: World, make_service: Any, queue: Any):
    item = world.make_job(num_records=5, batch_size=2)
    send(queue, item)
    loop, reporter = make_loop(world, queue, make_service())

    assert loop.poll_once() == 1

    spent = world.total_cost(item.job_id)  # every delta of the job, the export's too
    assert reporter.answers() == [
        (
            "success",
            item.task_token,
            {
                "records_generated": 5,
                "output_key": f"jobs/{item.job_id}/exports/dataset.jsonl",
                "files": 1,
                "tokens_used": spent["tokens_in"] + spent["tokens_out"],
                "cost": {
                    "bedrock": str(spent["bedrock"]),
                    "fargate": str(spent["fargate"]),
                    "s3": str(spent["s3"]),
                    "total": str(spent["bedrock"] + spent["fargate"] + spent["s3"]),
                },
            },
        )
    ]
    assert world.job(item.job_id)["task_token"] == item.task_token
    assert visible_messages(queue) == []
    assert len(world.read_jsonl(f"jobs/{item.job_id}/exports/dataset.jsonl")) == 5


def test_a_job_that_is_not_running_is_dropped_without_an_answer(world: World, make_service: Any, queue: Any):
    item = world.make_job(num_records=2, batch_size=2, status="COMPLETED")
    send(queue, item)
    loop, reporter = make_loop(world, queue, make_service())

    loop.poll_once()

    assert reporter.answers() == []
    assert "task_token" not in world.job(item.job_id)
    assert visible_messages(queue) == []
    assert world.parts(item.job_id) == []


def test_a_cancellation_requested_before_the_token_was_recorded_is_reported_at_once(
    world: World, make_service: Any, queue: Any
):
    item = world.make_job(num_records=4, batch_size=2)
    world.request_cancel(item.job_id)
    send(queue, item)
    loop, reporter = make_loop(world, queue, make_service())

    loop.poll_once()

    [(kind, token, (error, _cause))] = reporter.answers()
    assert (kind, token, error) == ("failure", item.task_token, JOB_CANCELLED)
    assert world.job(item.job_id)["task_token"] == item.task_token  # the cancel machine can use it
    assert world.parts(item.job_id) == []
    assert visible_messages(queue) == []


def test_an_invalid_work_item_is_failed_and_deleted(world: World, make_service: Any, queue: Any):
    send(queue, {"task_token": "tok-1", "job_id": "j", "num_records": "many"})
    loop, reporter = make_loop(world, queue, make_service())

    loop.poll_once()

    [(kind, token, (error, cause))] = reporter.answers()
    assert (kind, token, error) == ("failure", "tok-1", INVALID_WORK_ITEM)
    assert "num_records" in cause
    assert visible_messages(queue) == []


def test_sigterm_abandons_the_batch_and_the_next_worker_resumes_without_duplicates(
    world: World, make_service: Any, queue: Any
):
    item = world.make_job(num_records=9, batch_size=3)
    send(queue, item)

    def terminate_in_second_batch(call: int) -> None:
        if call == 5:
            os.kill(os.getpid(), signal.SIGTERM)

    first, first_reporter = make_loop(
        world, queue, make_service(provider=HookedProvider(terminate_in_second_batch))
    )
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    install_signal_handlers(first)
    try:
        first.run_forever()  # returns once the handler asked it to stop
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])

    assert first.stop.reason == SHUTDOWN
    assert first_reporter.answers() == []  # not reported: another worker takes over
    assert len(world.parts(item.job_id)) == 1  # batch 0 committed, batch 1 abandoned unwritten
    assert [d["record_id"] for d in world.deltas(item.job_id)] == ["00000000"]

    second, second_reporter = make_loop(world, queue, make_service())
    assert second.poll_once() == 1  # the message was made visible again at once

    [(kind, _token, output)] = second_reporter.answers()
    assert kind == "success"
    assert output["records_generated"] == 9
    records = world.read_jsonl(output["output_key"])
    assert [r["id"] for r in records] == record_id_list(item.job_id, 9)
    assert sum(int(d["records"]) for d in world.deltas(item.job_id)) == 9


def test_a_task_step_functions_no_longer_knows_stops_the_job(world: World, make_service: Any, queue: Any):
    item = world.make_job(num_records=200, batch_size=10)
    send(queue, item)
    reporter = RecordingReporter(None, heartbeat_error=TaskGone("TaskTimedOut"))
    slow = HookedProvider(lambda call: time.sleep(0.01))
    loop, _ = make_loop(world, queue, make_service(provider=slow), reporter=reporter, heartbeat_seconds=0.05)

    began = time.monotonic()
    loop.poll_once()

    assert time.monotonic() - began < 10
    assert reporter.answers() == []
    assert [s[0] for s in reporter.sent] == ["heartbeat"]  # the first beat found the task gone
    assert slow.calls < 200
    assert visible_messages(queue) == []  # nobody waits for it: dropped, not retried


def test_heartbeats_keep_coming_while_the_job_makes_progress(world: World, make_service: Any, queue: Any):
    item = world.make_job(num_records=30, batch_size=10)
    send(queue, item)
    slow = HookedProvider(lambda call: time.sleep(0.01))
    loop, reporter = make_loop(world, queue, make_service(provider=slow), heartbeat_seconds=0.05)

    loop.poll_once()

    beats = [s for s in reporter.sent if s[0] == "heartbeat"]
    assert len(beats) >= 2
    assert {token for _, token, _ in beats} == {item.task_token}
    assert reporter.answers()[0][0] == "success"


def test_a_heartbeat_follows_each_committed_batch(world: World, make_service: Any, queue: Any):
    item = world.make_job(num_records=8, batch_size=2)
    send(queue, item)
    progress = Progress()
    slow = HookedProvider(lambda call: time.sleep(0.05))
    service = make_service(provider=slow, on_progress=progress.touch, on_batch=progress.batch_done)
    # The timer alone would not beat during this test: every beat comes from a batch.
    loop, reporter = make_loop(
        world, queue, service, progress=progress, heartbeat_seconds=60, min_beat_gap_seconds=0
    )

    loop.poll_once()

    beats = [s for s in reporter.sent if s[0] == "heartbeat"]
    assert 2 <= len(beats) <= 4
    assert reporter.answers()[0][0] == "success"


def test_a_crash_on_the_last_allowed_attempt_fails_the_job(world: World, make_service: Any, queue: Any):
    item = world.make_job(num_records=3, batch_size=3)
    send(queue, item)

    def crash(call: int) -> None:
        raise RuntimeError("disk on fire")

    loop, reporter = make_loop(world, queue, make_service(provider=HookedProvider(crash)), max_attempts=1)

    loop.poll_once()

    [(kind, _token, (error, cause))] = reporter.answers()
    assert (kind, error) == ("failure", WORKER_ERROR)
    assert "disk on fire" in cause
    assert visible_messages(queue) == []


def test_a_crash_before_the_last_attempt_leaves_the_item_for_a_retry(
    world: World, make_service: Any, queue: Any
):
    item = world.make_job(num_records=3, batch_size=3)
    send(queue, item)

    def crash(call: int) -> None:
        raise RuntimeError("transient")

    loop, reporter = make_loop(world, queue, make_service(provider=HookedProvider(crash)), max_attempts=3)

    loop.poll_once()

    assert reporter.answers() == []
    sqs, url = queue
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "1"  # back after the retry delay


def test_record_task_token_answers_the_job_it_updated(world: World):
    item = world.make_job(num_records=1, batch_size=1)
    world.request_cancel(item.job_id)

    control = JobStore(world.ddb, JOBS_TABLE).record_task_token(item.job_id, "tok", now_iso())

    assert control is not None
    assert control.running
    assert control.cancel_requested_at is not None
    stopped = world.make_job(num_records=1, batch_size=1, status="CANCELLED")
    assert (
        JobStore(world.ddb, JOBS_TABLE).record_task_token(stopped.job_id, "tok", now_iso()).status
        == "CANCELLED"
    )
    assert JobStore(world.ddb, JOBS_TABLE).record_task_token("missing", "tok", now_iso()) is None


def test_shutdown_while_waiting_for_work_ends_the_loop(world: World, make_service: Any, queue: Any):
    loop, _ = make_loop(world, queue, make_service())
    timer = threading.Timer(0.2, loop.shutdown)
    timer.start()
    began = time.monotonic()
    loop.run_forever()
    assert time.monotonic() - began < 5
    assert loop.stop.reason == SHUTDOWN
