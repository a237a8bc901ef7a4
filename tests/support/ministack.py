"""The state machines of statemachines/ deployed on a real MiniStack, for tests/statemachines.

``start_stack`` synthesizes the CDK app's prod stage (tests/support/synthesized.py, cached), starts the
emulator (through the shims of ``local/shims``), creates the tables, bucket, bus and event capture of
tests/support/resources.py plus the work queue under the stage's names, and creates the three state
machines with the template's names and ``DefinitionSubstitutions`` resolved against those resources.
The definitions are the files of statemachines/ (tests/infra checks the template's assets are them).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.emulator import ACCOUNT_ID, REGION, Emulator, start_emulator
from stacks.names import Stage
from tests.support.resources import EventCapture, create_resources
from tests.support.synthesized import (
    STATEMACHINES_DIR,
    Cache,
    Resolver,
    SynthesizedMachines,
    synthesize_machines,
)

PLACEHOLDER = re.compile(r"\$\{([A-Za-z][A-Za-z0-9]*)\}")
ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/plot-palette-state-machines"
TERMINAL_STATUSES = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


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
    synthesized: SynthesizedMachines
    resolver: Resolver
    arns: dict[str, str] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        return self.emulator.client(service)

    @property
    def jobs_table(self) -> str:
        return self.synthesized.names.jobs_table

    @property
    def queue_table(self) -> str:
        return self.synthesized.names.queue_table

    @property
    def cost_tracking_table(self) -> str:
        return self.synthesized.names.cost_tracking_table

    @property
    def templates_table(self) -> str:
        return self.synthesized.names.templates_table

    @property
    def bucket(self) -> str:
        return self.synthesized.names.bucket(ACCOUNT_ID, REGION)

    def substitutions(self, stem: str) -> dict[str, str]:
        """The synthesized ``DefinitionSubstitutions`` of ``statemachines/{stem}.asl.json``, resolved."""
        raw = self.synthesized.machines[stem].substitutions
        return {key: self.resolver.resolve(value) for key, value in raw.items()}

    def deploy(self, key: str, stem: str, name: str | None = None, **overrides: str) -> str:
        """Create a state machine from ``statemachines/{stem}.asl.json`` with the synthesized
        substitutions (``overrides`` replace some of them), named as in the template unless ``name``
        is given, and start it later as ``start(key, ...)``."""
        substitutions = self.substitutions(stem)
        unknown = set(overrides) - set(substitutions)
        if unknown:
            raise KeyError(f"the template substitutes no {sorted(unknown)} in {stem}")
        definition = substitute(
            (STATEMACHINES_DIR / f"{stem}.asl.json").read_text(), {**substitutions, **overrides}
        )
        self.arns[key] = str(
            self.client("stepfunctions").create_state_machine(
                name=name or self.synthesized.machines[stem].name, definition=definition, roleArn=ROLE_ARN
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


def start_stack(
    mock_config_path: Path,
    *,
    context: Mapping[str, str],
    cache: Cache | None = None,
    log_path: Path | None = None,
) -> StateMachineStack:
    """Start MiniStack with ``SFN_WAIT_SCALE=0`` and the mock config, create the resources under the
    synthesized prod stage's names and deploy its state machines with their synthesized substitutions.

    ``context`` is the app's context (docs/deploy.md) the stage is synthesized with.
    """
    machines = synthesize_machines(Stage.PROD, context, cache)
    emulator = start_emulator(
        extra_env={"SFN_WAIT_SCALE": "0", "SFN_MOCK_CONFIG": str(mock_config_path)}, log_path=log_path
    )
    try:
        names = machines.names
        capture = create_resources(
            _EmulatorSession(emulator),
            bucket=names.bucket(ACCOUNT_ID, REGION),
            bus=names.event_bus,
            region=REGION,
            jobs=names.jobs_table,
            queue=names.queue_table,
            templates=names.templates_table,
            cost_tracking=names.cost_tracking_table,
            idempotency=names.idempotency_table,
        )
        sqs = emulator.client("sqs")
        work_queue_url = sqs.create_queue(QueueName=names.work_queue, Attributes={"VisibilityTimeout": "30"})[
            "QueueUrl"
        ]
        # The other task sizes' queues exist so their placeholders resolve; tests use the default size.
        for size in ("small", "large", "xlarge"):
            sqs.create_queue(QueueName=f"{names.work_queue}-{size}", Attributes={"VisibilityTimeout": "30"})
        resolver = Resolver(
            machines.resources,
            account=ACCOUNT_ID,
            region=REGION,
            queue_url=lambda name: str(sqs.get_queue_url(QueueName=name)["QueueUrl"]),
        )
        stack = StateMachineStack(emulator, capture, work_queue_url, machines, resolver)
        for stem in machines.machines:
            stack.deploy(stem, stem)
        return stack
    except BaseException:
        emulator.stop()
        raise
