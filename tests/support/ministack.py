"""The state machines of statemachines/ deployed on a real MiniStack, for tests/statemachines.

``start_stack`` starts the emulator (through the shims of ``local/shims``), creates the tables, bucket,
bus and event capture of tests/support/resources.py plus the work queue, substitutes every
placeholder of the ASL files the way the CDK app does, and creates the three state machines.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from functions.common import settings as s
from local.emulator import ACCOUNT_ID, REGION, Emulator, start_emulator
from tests.support.resources import EventCapture, create_resources

REPO = Path(__file__).resolve().parents[2]
STATEMACHINES_DIR = REPO / "statemachines"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z][A-Za-z0-9]*)\}")
ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/plot-palette-state-machines"
TERMINAL_STATUSES = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")

# file stem → the state machine's name in the emulator (and in the mock config).
MACHINES = {
    "job_lifecycle": "plot-palette-job-lifecycle",
    "job_cancellation": "plot-palette-job-cancellation",
    "job_cleanup": "plot-palette-job-cleanup",
}


def asl_files() -> list[Path]:
    return sorted(STATEMACHINES_DIR.glob("*.asl.json"))


def placeholders_in(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace every ``${Name}``, as CDK's ``definition_substitutions`` does; a missing one raises."""
    missing = placeholders_in(text) - set(values)
    if missing:
        raise KeyError(f"no substitution for {sorted(missing)}")
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


class _EmulatorSession:
    """What create_resources needs (``.client(service)``), aimed at the emulator."""

    def __init__(self, emulator: Emulator) -> None:
        self._emulator = emulator

    def client(self, service: str) -> Any:
        return self._emulator.client(service)


@dataclass
class Execution:
    arn: str
    description: dict[str, Any]
    events: list[dict[str, Any]]

    @property
    def status(self) -> str:
        return str(self.description["status"])

    @property
    def path(self) -> list[str]:
        """The names of the states entered, in order (retries do not re-enter a state)."""
        return [
            e["stateEnteredEventDetails"]["name"] for e in self.events if e["type"].endswith("StateEntered")
        ]

    def failures(self, state: str) -> list[dict[str, Any]]:
        """The failed task attempts (error, cause) of one state, in order."""
        current, found = None, []
        for event in self.events:
            if event["type"].endswith("StateEntered"):
                current = event["stateEnteredEventDetails"]["name"]
            elif event["type"] == "TaskFailed" and current == state:
                found.append(event["taskFailedEventDetails"])
        return found

    @property
    def output(self) -> Any:
        return json.loads(self.description["output"]) if self.description.get("output") else None


@dataclass
class StateMachineStack:
    emulator: Emulator
    capture: EventCapture
    work_queue_url: str
    substitutions: dict[str, str]
    arns: dict[str, str] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        return self.emulator.client(service)

    @property
    def jobs_table(self) -> str:
        return self.substitutions["JobsTable"]

    @property
    def queue_table(self) -> str:
        return self.substitutions["QueueTable"]

    @property
    def cost_tracking_table(self) -> str:
        return self.substitutions["CostTrackingTable"]

    @property
    def templates_table(self) -> str:
        return self.substitutions["TemplatesTable"]

    @property
    def bucket(self) -> str:
        return self.substitutions["BucketName"]

    def deploy(self, key: str, stem: str, name: str, **overrides: str) -> str:
        """Create state machine ``name`` from ``statemachines/{stem}.asl.json``, substituted like the
        stack's (``overrides`` replace some values), and start it later as ``start(key, ...)``."""
        definition = substitute(
            (STATEMACHINES_DIR / f"{stem}.asl.json").read_text(), {**self.substitutions, **overrides}
        )
        self.arns[key] = str(
            self.client("stepfunctions").create_state_machine(
                name=name, definition=definition, roleArn=ROLE_ARN
            )["stateMachineArn"]
        )
        return self.arns[key]

    def start(
        self, machine: str, payload: Any, *, name: str | None = None, test_case: str | None = None
    ) -> str:
        arn = self.arns[machine] + (f"#{test_case}" if test_case else "")
        kwargs: dict[str, Any] = {"stateMachineArn": arn, "input": json.dumps(payload)}
        if name:
            kwargs["name"] = name
        return str(self.client("stepfunctions").start_execution(**kwargs)["executionArn"])

    def describe(self, execution_arn: str) -> dict[str, Any]:
        return dict(self.client("stepfunctions").describe_execution(executionArn=execution_arn))

    def wait(self, execution_arn: str, timeout: float = 30.0) -> Execution:
        """Poll until the execution ends; fail the test after ``timeout`` seconds."""
        sfn = self.client("stepfunctions")
        deadline = time.monotonic() + timeout
        while True:
            description = sfn.describe_execution(executionArn=execution_arn)
            if description["status"] in TERMINAL_STATUSES:
                return Execution(execution_arn, description, self.history(execution_arn))
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"execution still {description['status']} after {timeout:.0f} s; "
                    f"path so far: {Execution(execution_arn, description, self.history(execution_arn)).path}"
                )
            time.sleep(0.05)

    def wait_for_state(self, execution_arn: str, state: str, timeout: float = 15.0) -> None:
        """Poll until the execution has entered ``state``."""
        deadline = time.monotonic() + timeout
        while True:
            events = self.history(execution_arn)
            if state in Execution(execution_arn, {}, events).path:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"execution did not enter {state!r} within {timeout:.0f} s")
            time.sleep(0.05)

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        sfn = self.client("stepfunctions")
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
        while True:
            page = sfn.get_execution_history(**kwargs)
            events.extend(page["events"])
            if not page.get("nextToken"):
                return events
            kwargs["nextToken"] = page["nextToken"]


def stack_substitutions(
    *,
    work_queue_url: str,
    heartbeat_seconds: int,
    job_timeout_seconds: int,
    batch_size: int,
    cleanup_rounds_per_execution: int = 200,
    partition_records: int = 1000,
    partition_concurrency: int = 10,
) -> dict[str, str]:
    """Every placeholder of the ASL files, the same names statemachines/README.md documents.

    Resource names are the settings' (what tests/support/resources.py creates).
    """
    return {
        "JobsTable": s.JobsTableSettings().jobs_table,
        "QueueTable": s.QueueTableSettings().queue_table,
        "CostTrackingTable": s.CostTrackingTableSettings().cost_tracking_table,
        "TemplatesTable": s.TemplatesTableSettings().templates_table,
        "BucketName": s.BucketSettings().bucket_name,
        "EventBusName": s.EventBusSettings().event_bus_name,
        # One queue for every task size, as in the local stage.
        "WorkQueueUrlSmall": work_queue_url,
        "WorkQueueUrlMedium": work_queue_url,
        "WorkQueueUrlLarge": work_queue_url,
        "WorkQueueUrlXlarge": work_queue_url,
        "HeartbeatSeconds": str(heartbeat_seconds),
        "JobTimeoutSeconds": str(job_timeout_seconds),
        "BatchSize": str(batch_size),
        "PartitionRecords": str(partition_records),
        "PartitionConcurrency": str(partition_concurrency),
        "CleanupRoundsPerExecution": str(cleanup_rounds_per_execution),
    }


def start_stack(
    mock_config_path: Path,
    *,
    heartbeat_seconds: int = 3,
    job_timeout_seconds: int = 60,
    batch_size: int = 2,
    cleanup_rounds_per_execution: int = 200,
    partition_records: int = 1000,
    partition_concurrency: int = 10,
    log_path: Path | None = None,
) -> StateMachineStack:
    """Start MiniStack with ``SFN_WAIT_SCALE=0`` and the mock config, and deploy the state machines."""
    emulator = start_emulator(
        extra_env={"SFN_WAIT_SCALE": "0", "SFN_MOCK_CONFIG": str(mock_config_path)}, log_path=log_path
    )
    try:
        capture = create_resources(_EmulatorSession(emulator), region=REGION)
        sqs = emulator.client("sqs")
        work_queue_url = sqs.create_queue(
            QueueName="plot-palette-work", Attributes={"VisibilityTimeout": "30"}
        )["QueueUrl"]
        substitutions = stack_substitutions(
            work_queue_url=work_queue_url,
            heartbeat_seconds=heartbeat_seconds,
            job_timeout_seconds=job_timeout_seconds,
            batch_size=batch_size,
            cleanup_rounds_per_execution=cleanup_rounds_per_execution,
            partition_records=partition_records,
            partition_concurrency=partition_concurrency,
        )
        stack = StateMachineStack(emulator, capture, work_queue_url, substitutions)
        for path in asl_files():
            stem = path.name.removesuffix(".asl.json")
            stack.deploy(stem, stem, MACHINES[stem])
        return stack
    except BaseException:
        emulator.stop()
        raise
