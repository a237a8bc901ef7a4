"""ECS task scale-in protection around each work item, the worker loop against moto and a real local
HTTP server answering like the ECS agent (tests/integration/worker/ecs_agent.py).

The task must be protected from receiving a work item until its answer is sent, renewed while the
job runs, and unprotected once the item is done with, whatever the outcome; the agent failing
never changes the outcome.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from functions.worker.main import build_protection, install_signal_handlers
from functions.worker.protection import EcsAgentTaskProtection, NoTaskProtection
from functions.worker.reporter import StepFunctionsTaskReporter
from functions.worker.runner import SHUTDOWN, WORKER_ERROR
from functions.worker.service import JOB_CANCELLED
from functions.worker.settings import WorkerSettings
from tests.integration.worker.conftest import (
    HookedProvider,
    RecordingReporter,
    World,
    make_loop,
    send,
    visible_messages,
)
from tests.integration.worker.ecs_agent import (
    DISABLE,
    TASK_ARN,
    FakeEcsAgent,
    closed_port_uri,
    running_agent,
)

pytestmark = pytest.mark.integration

MINUTES = 5
PROTECT = {"ProtectionEnabled": True, "ExpiresInMinutes": MINUTES}


@pytest.fixture
def agent() -> Iterator[FakeEcsAgent]:
    yield from running_agent()


class ProtectionWitness(RecordingReporter):
    """Records what the agent had been told at the moment each answer was sent."""

    def __init__(self, world: World, agent: FakeEcsAgent) -> None:
        super().__init__(StepFunctionsTaskReporter(world.session.client("stepfunctions")))
        self._agent = agent
        self.states_at_answer: list[list[dict[str, Any]]] = []

    def success(self, task_token: str, output: dict[str, Any]) -> None:
        self.states_at_answer.append(self._agent.states())
        super().success(task_token, output)

    def failure(self, task_token: str, error: str, cause: str) -> None:
        self.states_at_answer.append(self._agent.states())
        super().failure(task_token, error, cause)


def protection(uri: str, **options: Any) -> EcsAgentTaskProtection:
    return EcsAgentTaskProtection(uri, expires_in_minutes=MINUTES, **options)


def test_a_job_is_protected_until_its_result_is_reported_then_released(
    world: World, make_service: Any, queue: Any, agent: FakeEcsAgent
):
    item = world.make_job(num_records=4, batch_size=2)
    send(queue, item)
    witness = ProtectionWitness(world, agent)
    loop, _ = make_loop(world, queue, make_service(), reporter=witness, protection=protection(agent.uri))

    assert loop.poll_once() == 1

    assert [kind for kind, _, _ in witness.answers()] == ["success"]
    assert witness.states_at_answer == [[PROTECT]]  # protected while answering, not yet released
    assert agent.states() == [PROTECT, DISABLE]
    assert visible_messages(queue) == []


def test_a_long_job_renews_its_protection_with_the_heartbeats(
    world: World, make_service: Any, queue: Any, agent: FakeEcsAgent
):
    item = world.make_job(num_records=30, batch_size=10)
    send(queue, item)
    slow = HookedProvider(lambda call: time.sleep(0.01))
    loop, reporter = make_loop(
        world,
        queue,
        make_service(provider=slow),
        heartbeat_seconds=0.05,
        protection=protection(agent.uri, renew_after_seconds=0.05),
    )

    began = time.monotonic()
    loop.poll_once()

    assert time.monotonic() - began < 20
    assert reporter.answers()[0][0] == "success"
    states = agent.states()
    assert states[0] == PROTECT
    assert states[-1] == DISABLE
    renewals = states[1:-1]
    assert renewals
    assert all(state == PROTECT for state in renewals)
    beats = [s for s in reporter.sent if s[0] == "heartbeat"]
    assert len(renewals) <= len(beats)  # renewed on heartbeats, never more often


def test_renewals_wait_until_due(world: World, make_service: Any, queue: Any, agent: FakeEcsAgent):
    item = world.make_job(num_records=30, batch_size=10)
    send(queue, item)
    slow = HookedProvider(lambda call: time.sleep(0.01))
    loop, reporter = make_loop(
        world, queue, make_service(provider=slow), heartbeat_seconds=0.05, protection=protection(agent.uri)
    )

    loop.poll_once()

    assert len([s for s in reporter.sent if s[0] == "heartbeat"]) >= 2
    assert agent.states() == [PROTECT, DISABLE]  # half of 5 minutes never passed: no renewal


def test_a_failed_job_is_released_after_its_failure_is_reported(
    world: World, make_service: Any, queue: Any, agent: FakeEcsAgent
):
    item = world.make_job(num_records=3, batch_size=3)
    send(queue, item)

    def crash(call: int) -> None:
        raise RuntimeError("disk on fire")

    witness = ProtectionWitness(world, agent)
    service = make_service(provider=HookedProvider(crash))
    loop, _ = make_loop(
        world, queue, service, reporter=witness, max_attempts=1, protection=protection(agent.uri)
    )

    loop.poll_once()

    [(kind, _token, (error, _cause))] = witness.answers()
    assert (kind, error) == ("failure", WORKER_ERROR)
    assert witness.states_at_answer == [[PROTECT]]
    assert agent.states() == [PROTECT, DISABLE]


def test_a_crash_left_for_a_retry_is_released(
    world: World, make_service: Any, queue: Any, agent: FakeEcsAgent
):
    item = world.make_job(num_records=3, batch_size=3)
    send(queue, item)

    def crash(call: int) -> None:
        raise RuntimeError("transient")

    service = make_service(provider=HookedProvider(crash))
    loop, reporter = make_loop(world, queue, service, max_attempts=3, protection=protection(agent.uri))

    loop.poll_once()

    assert reporter.answers() == []
    assert agent.states() == [PROTECT, DISABLE]


def test_a_job_cancelled_mid_run_is_released_after_the_cancellation_is_reported(
    world: World, make_service: Any, queue: Any, agent: FakeEcsAgent
):
    item = world.make_job(num_records=6, batch_size=2)
    send(queue, item)

    def cancel_in_first_batch(call: int) -> None:
        if call == 1:
            world.request_cancel(item.job_id)

    witness = ProtectionWitness(world, agent)
    service = make_service(provider=HookedProvider(cancel_in_first_batch))
    loop, _ = make_loop(world, queue, service, reporter=witness, protection=protection(agent.uri))

    loop.poll_once()

    [(kind, _token, (error, _cause))] = witness.answers()
    assert (kind, error) == ("failure", JOB_CANCELLED)
    assert witness.states_at_answer == [[PROTECT]]
    assert agent.states() == [PROTECT, DISABLE]


def test_items_dropped_at_once_are_released_too(
    world: World, make_service: Any, queue: Any, agent: FakeEcsAgent
):
    cancelled_first = world.make_job(num_records=2, batch_size=2)
    world.request_cancel(cancelled_first.job_id)
    send(queue, cancelled_first)
    send(queue, world.make_job(num_records=2, batch_size=2, status="COMPLETED"))
    send(queue, {"task_token": "tok-1", "job_id": "j", "num_records": "many"})
    loop, reporter = make_loop(world, queue, make_service(), protection=protection(agent.uri))

    handled = sum(loop.poll_once() for _ in range(5))

    assert handled == 3
    assert len(reporter.answers()) == 2  # the cancellation and the invalid item
    assert agent.states() == [PROTECT, DISABLE] * 3  # protected from receipt, released each time


def test_sigterm_abandons_the_job_and_releases_the_protection(
    world: World, make_service: Any, queue: Any, agent: FakeEcsAgent
):
    item = world.make_job(num_records=9, batch_size=3)
    send(queue, item)

    def terminate_in_second_batch(call: int) -> None:
        if call == 5:
            os.kill(os.getpid(), signal.SIGTERM)

    service = make_service(provider=HookedProvider(terminate_in_second_batch))
    loop, reporter = make_loop(world, queue, service, protection=protection(agent.uri))
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    install_signal_handlers(loop)
    try:
        loop.run_forever()
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])

    assert loop.stop.reason == SHUTDOWN
    assert reporter.answers() == []
    assert agent.states() == [PROTECT, DISABLE]
    assert len(visible_messages(queue)) == 1  # handed back for the next worker


def test_without_an_agent_uri_the_worker_runs_jobs_and_calls_no_agent(
    world: World, make_service: Any, queue: Any, agent: FakeEcsAgent, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("ECS_AGENT_URI", raising=False)
    settings = WorkerSettings(WORK_QUEUE_URL=queue[1])
    wired = build_protection(settings)
    assert isinstance(wired, NoTaskProtection)
    item = world.make_job(num_records=2, batch_size=2)
    send(queue, item)
    loop, reporter = make_loop(world, queue, make_service(), protection=wired)

    loop.poll_once()

    assert reporter.answers()[0][0] == "success"
    assert agent.requests == []


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, {"error": {"Arn": TASK_ARN, "Code": "ServerException", "Message": "boom"}}),
        (403, {"error": {"Arn": TASK_ARN, "Code": "AccessDeniedException", "Message": "no role"}}),
        (200, {"failure": {"Arn": TASK_ARN, "Reason": "TASK_NOT_VALID", "Detail": None}}),
    ],
    ids=["500", "403", "task-not-valid"],
)
def test_an_agent_that_answers_with_an_error_does_not_fail_the_job(
    world: World, make_service: Any, queue: Any, agent: FakeEcsAgent, status: int, body: Any
):
    agent.answer_with(status, body)
    item = world.make_job(num_records=20, batch_size=10)
    send(queue, item)
    slow = HookedProvider(lambda call: time.sleep(0.01))
    loop, reporter = make_loop(
        world, queue, make_service(provider=slow), heartbeat_seconds=0.05, protection=protection(agent.uri)
    )

    loop.poll_once()

    [(kind, _token, output)] = reporter.answers()
    assert kind == "success"
    assert output["records_generated"] == 20
    assert visible_messages(queue) == []
    states = agent.states()
    # Not protected, so every heartbeat tries again; the release is sent all the same.
    assert states[0] == PROTECT
    assert states[-1] == DISABLE
    assert len(states) >= 3


def test_an_unreachable_agent_does_not_fail_the_job(world: World, make_service: Any, queue: Any):
    item = world.make_job(num_records=4, batch_size=2)
    send(queue, item)
    loop, reporter = make_loop(world, queue, make_service(), protection=protection(closed_port_uri()))

    loop.poll_once()

    [(kind, _token, output)] = reporter.answers()
    assert kind == "success"
    assert output["records_generated"] == 4
    assert visible_messages(queue) == []


class ExplodingProtection:
    """A protection that breaks its promise never to raise: the runner still carries on."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def acquire(self) -> None:
        self.calls.append("acquire")
        raise RuntimeError("acquire broke")

    def renew(self) -> None:
        self.calls.append("renew")
        raise RuntimeError("renew broke")

    def release(self) -> None:
        self.calls.append("release")
        raise RuntimeError("release broke")


def test_a_protection_that_raises_does_not_fail_the_job(world: World, make_service: Any, queue: Any):
    item = world.make_job(num_records=20, batch_size=10)
    send(queue, item)
    exploding = ExplodingProtection()
    slow = HookedProvider(lambda call: time.sleep(0.01))
    loop, reporter = make_loop(
        world, queue, make_service(provider=slow), heartbeat_seconds=0.05, protection=exploding
    )

    loop.poll_once()

    assert reporter.answers()[0][0] == "success"
    assert exploding.calls[0] == "acquire"
    assert exploding.calls[-1] == "release"
    assert "renew" in exploding.calls
