"""Fixtures of the stream consumer tests: settings, a lifecycle state machine in moto, stream taps."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from functions.common.settings import load_settings
from tests.integration.streams.support import COST_TABLE, JOBS_TABLE, StreamTap, stream_event
from tests.support.http import LambdaContext

LIFECYCLE_NAME = "plot-palette-job-lifecycle"
LIFECYCLE_ARN = f"arn:aws:states:us-east-1:123456789012:stateMachine:{LIFECYCLE_NAME}"
# moto only records executions (no execute_state_machine config): a trivial definition will do.
LIFECYCLE_DEFINITION = json.dumps(
    {"StartAt": "Run the job", "States": {"Run the job": {"Type": "Pass", "End": True}}}
)


def create_lifecycle(aws: Any) -> str:
    answer = aws.client("stepfunctions").create_state_machine(
        name=LIFECYCLE_NAME,
        definition=LIFECYCLE_DEFINITION,
        roleArn="arn:aws:iam::123456789012:role/plot-palette-lifecycle",
    )
    assert answer["stateMachineArn"] == LIFECYCLE_ARN
    return LIFECYCLE_ARN


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Set the promoter's environment (as the CDK app does) and rebuild cached settings."""

    def apply(max_running_jobs: int = 5, max_running_jobs_per_user: int | None = None) -> None:
        monkeypatch.setenv("LIFECYCLE_STATE_MACHINE_ARN", LIFECYCLE_ARN)
        monkeypatch.setenv("MAX_RUNNING_JOBS", str(max_running_jobs))
        # Most tests here use one user: without a cap of their own they may fill every slot.
        per_user = max_running_jobs if max_running_jobs_per_user is None else max_running_jobs_per_user
        monkeypatch.setenv("MAX_RUNNING_JOBS_PER_USER", str(per_user))
        load_settings.cache_clear()

    apply()
    yield apply
    load_settings.cache_clear()


@pytest.fixture
def lifecycle(aws: Any, settings_env: Any) -> str:
    return create_lifecycle(aws)


@pytest.fixture
def jobs_stream(aws: Any) -> StreamTap:
    return StreamTap(aws.session, JOBS_TABLE)


@pytest.fixture
def cost_stream(aws: Any) -> StreamTap:
    return StreamTap(aws.session, COST_TABLE)


def deliver(
    handler: Callable[[dict[str, Any], Any], dict[str, Any]], records: list[dict[str, Any]], tap: StreamTap
) -> dict[str, Any]:
    """Invoke a stream handler with ``records`` the way the event source mapping would."""
    return handler(stream_event(records, tap.stream_arn), LambdaContext())
