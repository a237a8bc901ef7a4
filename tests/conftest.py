"""Shared fixtures: an in-process moto account with every resource of docs/data-model.md.

Tests never touch real AWS: credentials are fake and moto intercepts every call. The resource names
every test uses (the settings have no defaults for them) are set here, once, as the prod stage's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

# Before anything builds a boto3 client.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        # moto: DynamoDB Streams describe_stream answers 404 without this.
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "PlotPaletteTest",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "JOBS_TABLE": "plot-palette-Jobs",
        "QUEUE_TABLE": "plot-palette-Queue",
        "TEMPLATES_TABLE": "plot-palette-Templates",
        "COST_TRACKING_TABLE": "plot-palette-CostTracking",
        "IDEMPOTENCY_TABLE": "plot-palette-Idempotency",
        "BUCKET_NAME": "plot-palette-data",
        "EVENT_BUS_NAME": "plot-palette",
    }
)

from moto import mock_aws

from functions.common.aws import reset_clients
from tests.support.resources import EventCapture, create_resources

EVENTS_DIR = Path(__file__).parent / "events"


@pytest.fixture
def aws() -> Iterator[Any]:
    """moto for the test's duration, every table, the bucket, the bus and an event capture queue."""
    with mock_aws():
        reset_clients()
        session = boto3.Session(region_name="us-east-1")
        capture = create_resources(session)
        yield _Account(session=session, capture=capture)
    reset_clients()


class _Account:
    def __init__(self, session: Any, capture: EventCapture) -> None:
        self.session = session
        self.capture = capture

    def client(self, service: str) -> Any:
        return self.session.client(service)


def load_event(name: str) -> dict[str, Any]:
    """A sample event from tests/events/<name>.json."""
    return json.loads((EVENTS_DIR / f"{name}.json").read_text())
