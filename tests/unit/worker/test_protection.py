"""Task scale-in protection through the ECS agent endpoint, against a real local HTTP server."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from functions.worker.main import build_protection
from functions.worker.protection import EcsAgentTaskProtection, NoTaskProtection
from functions.worker.settings import WorkerSettings
from tests.integration.worker.ecs_agent import (
    CONTAINER,
    DISABLE,
    TASK_ARN,
    FakeEcsAgent,
    closed_port_uri,
    running_agent,
)

pytestmark = pytest.mark.unit

PROTECT_10 = {"ProtectionEnabled": True, "ExpiresInMinutes": 10}


@pytest.fixture
def agent() -> Iterator[FakeEcsAgent]:
    yield from running_agent()


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "plot-palette"]


def test_acquire_puts_protection_enabled_with_its_expiry_as_json(agent: FakeEcsAgent) -> None:
    EcsAgentTaskProtection(agent.uri, expires_in_minutes=10).acquire()

    [request] = agent.requests
    assert request.method == "PUT"
    assert request.path == f"/api/{CONTAINER}/task-protection/v1/state"
    assert request.content_type == "application/json"
    assert request.body == PROTECT_10


def test_release_puts_protection_disabled(agent: FakeEcsAgent) -> None:
    protection = EcsAgentTaskProtection(agent.uri + "/", expires_in_minutes=10)  # a trailing slash too
    protection.acquire()
    protection.release()

    assert agent.states() == [PROTECT_10, DISABLE]
    assert agent.requests[-1].path == f"/api/{CONTAINER}/task-protection/v1/state"


def test_renew_protects_again_only_once_due(agent: FakeEcsAgent) -> None:
    clock = ManualClock()
    protection = EcsAgentTaskProtection(agent.uri, expires_in_minutes=10, monotonic=clock)
    protection.acquire()

    clock.now += 299  # the default renewal is at half the period: 300 s
    protection.renew()
    assert agent.states() == [PROTECT_10]

    clock.now += 1
    protection.renew()
    clock.now += 10
    protection.renew()  # renewed 10 s ago: not due
    assert agent.states() == [PROTECT_10, PROTECT_10]


def test_renew_after_release_sends_nothing(agent: FakeEcsAgent) -> None:
    clock = ManualClock()
    protection = EcsAgentTaskProtection(agent.uri, expires_in_minutes=1, monotonic=clock)
    protection.acquire()
    protection.release()
    clock.now += 3600
    protection.renew()  # a late heartbeat after the job ended must not protect an idle task

    assert agent.states() == [{"ProtectionEnabled": True, "ExpiresInMinutes": 1}, DISABLE]


def test_an_agent_error_is_a_warning_and_the_next_renewal_retries(
    agent: FakeEcsAgent, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    protection = EcsAgentTaskProtection(agent.uri, expires_in_minutes=10, monotonic=clock)
    agent.answer_with(
        500, {"requestID": "r-1", "error": {"Arn": TASK_ARN, "Code": "ServerException", "Message": "boom"}}
    )

    protection.acquire()  # does not raise

    [warning] = warnings_of(caplog)
    assert warning.__dict__["status"] == 500
    assert warning.__dict__["reason"] == "ServerException"
    assert warning.__dict__["detail"] == "boom"

    agent.answer_with(200, {"protection": {"ProtectionEnabled": True, "TaskArn": TASK_ARN}})
    clock.now += 1  # long before the renewal would be due had the first call worked
    protection.renew()
    clock.now += 1
    protection.renew()  # the retry worked: not due again yet
    assert agent.states() == [PROTECT_10, PROTECT_10]


def test_an_access_denied_answer_is_a_warning(agent: FakeEcsAgent, caplog: pytest.LogCaptureFixture) -> None:
    message = "Invalid Request: no task IAM role credentials available for task"
    agent.answer_with(403, {"error": {"Arn": TASK_ARN, "Code": "AccessDeniedException", "Message": message}})

    EcsAgentTaskProtection(agent.uri, expires_in_minutes=10).acquire()

    [warning] = warnings_of(caplog)
    assert (warning.__dict__["status"], warning.__dict__["reason"]) == (403, "AccessDeniedException")


def test_a_failure_in_a_200_answer_is_not_taken_for_protection(
    agent: FakeEcsAgent, caplog: pytest.LogCaptureFixture
) -> None:
    # ECS refuses tasks outside a service: the agent answers 200 with a failure, not a protection.
    clock = ManualClock()
    protection = EcsAgentTaskProtection(agent.uri, expires_in_minutes=10, monotonic=clock)
    agent.answer_with(200, {"failure": {"Arn": TASK_ARN, "Reason": "TASK_NOT_VALID", "Detail": None}})

    protection.acquire()
    clock.now += 1
    protection.renew()  # not protected: tried again at the next renewal

    warnings = warnings_of(caplog)
    assert [w.__dict__["reason"] for w in warnings] == ["TASK_NOT_VALID", "TASK_NOT_VALID"]
    assert len(agent.states()) == 2


def test_a_non_json_answer_is_a_warning(agent: FakeEcsAgent, caplog: pytest.LogCaptureFixture) -> None:
    agent.answer_with(502, b"<html>bad gateway</html>")

    EcsAgentTaskProtection(agent.uri, expires_in_minutes=10).release()

    [warning] = warnings_of(caplog)
    assert warning.__dict__["status"] == 502
    assert "bad gateway" in warning.__dict__["detail"]


def test_an_unreachable_agent_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    protection = EcsAgentTaskProtection(closed_port_uri(), expires_in_minutes=10)

    protection.acquire()
    protection.renew()
    protection.release()

    warnings = warnings_of(caplog)
    assert [w.__dict__["protection_enabled"] for w in warnings] == [True, True, False]
    assert all("Connection refused" in w.__dict__["error"] for w in warnings)


def test_a_slow_agent_times_out_instead_of_holding_the_job(
    agent: FakeEcsAgent, caplog: pytest.LogCaptureFixture
) -> None:
    agent.answer_with(200, {"protection": {"ProtectionEnabled": True}}, delay=2.0)
    protection = EcsAgentTaskProtection(agent.uri, expires_in_minutes=10, timeout_seconds=0.2)

    began = time.monotonic()
    protection.acquire()

    assert time.monotonic() - began < 1.5
    [warning] = warnings_of(caplog)
    assert "timed out" in warning.__dict__["error"]


@pytest.mark.parametrize("minutes", [0, 2881])
def test_the_expiry_must_be_within_the_agent_range(minutes: int) -> None:
    with pytest.raises(ValueError, match="expires_in_minutes"):
        EcsAgentTaskProtection("http://127.0.0.1:1/api/c", expires_in_minutes=minutes)


def test_only_an_http_agent_uri_is_accepted() -> None:
    with pytest.raises(ValueError, match="http"):
        EcsAgentTaskProtection("file:///etc/passwd", expires_in_minutes=10)


def _settings(monkeypatch: pytest.MonkeyPatch, **environment: str) -> WorkerSettings:
    monkeypatch.delenv("ECS_AGENT_URI", raising=False)
    monkeypatch.setenv("WORK_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/work")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return WorkerSettings()


def test_without_an_agent_uri_protection_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    protection = build_protection(_settings(monkeypatch))

    assert isinstance(protection, NoTaskProtection)
    protection.acquire()
    protection.renew()
    protection.release()


def test_inside_ecs_protection_goes_to_the_agent_for_the_configured_minutes(
    monkeypatch: pytest.MonkeyPatch, agent: FakeEcsAgent
) -> None:
    settings = _settings(monkeypatch, ECS_AGENT_URI=agent.uri, WORKER_PROTECTION_MINUTES="30")

    protection = build_protection(settings)
    protection.acquire()

    assert agent.states() == [{"ProtectionEnabled": True, "ExpiresInMinutes": 30}]


def test_settings_refuse_a_protection_shorter_than_two_heartbeats(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="WORKER_PROTECTION_MINUTES"):
        _settings(monkeypatch, WORKER_PROTECTION_MINUTES="1", WORKER_HEARTBEAT_SECONDS="31")
    settings = _settings(monkeypatch, WORKER_PROTECTION_MINUTES="1", WORKER_HEARTBEAT_SECONDS="30")
    assert (settings.protection_minutes, settings.heartbeat_seconds) == (1, 30)
