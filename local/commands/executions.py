"""``plot-palette executions JOB_ID``: a job's state machine executions, state by state with times."""

from __future__ import annotations

import argparse
import re
from datetime import datetime
from typing import Any

from local.commands import CliError, running

_JOB_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_FAILURE_SUFFIXES = ("Failed", "TimedOut", "Aborted")
_NOT_CAUGHT = {"ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"}
_ATTEMPT_SUCCESS = ("TaskSucceeded", "LambdaFunctionSucceeded", "ActivitySucceeded")
_STATE_MACHINE_SUFFIX = "_STATE_MACHINE_ARN"


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    executions = sub.add_parser("executions", parents=[common], help="a job's state machine history")
    executions.add_argument("job_id")
    executions.set_defaults(handler=run)


# --------------------------------------------------------------------------- history -> rows


def _fmt_time(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%H:%M:%S.%f")[:-3]
    return str(value)


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _failure_message(event: dict[str, Any]) -> str:
    kind = event["type"]
    detail_key = next((k for k in event if k.endswith("EventDetails")), None)
    details = event.get(detail_key, {}) if detail_key else {}
    error = details.get("error") or kind
    cause = details.get("cause") or ""
    return f"{error}: {_one_line(cause)}" if cause else str(error)


class _History:
    """Folds history events into rows, one per state entered (see ``describe_history``)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.open_rows: list[dict[str, Any]] = []  # entered and not exited yet, oldest first

    def add(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind.endswith("StateEntered"):
            self._entered(event, kind)
        elif kind.endswith("StateExited"):
            self._exited(event)
        elif kind.startswith("Execution") and kind.endswith((*_FAILURE_SUFFIXES, "Succeeded")):
            self._execution_ended(event, kind)
        elif kind.endswith(_FAILURE_SUFFIXES) and self.open_rows:
            target = self.open_rows[-1]
            target["failures"].append(_failure_message(event))
            target["error"] = target["failures"][-1]
        elif kind in _ATTEMPT_SUCCESS and self.open_rows:
            self.open_rows[-1]["error"] = None  # a retry succeeded

    def _entered(self, event: dict[str, Any], kind: str) -> None:
        row: dict[str, Any] = {
            "state": event["stateEnteredEventDetails"]["name"],
            "type": kind.removesuffix("StateEntered"),
            "entered": event["timestamp"],
            "exited": None,
            "failures": [],
            "error": None,
        }
        self.rows.append(row)
        self.open_rows.append(row)

    def _exited(self, event: dict[str, Any]) -> None:
        name = event["stateExitedEventDetails"]["name"]
        exited = next((r for r in reversed(self.open_rows) if r["state"] == name), None)
        if exited is not None:
            exited["exited"] = event["timestamp"]
            self.open_rows.remove(exited)

    def _execution_ended(self, event: dict[str, Any], kind: str) -> None:
        succeeded = kind.endswith("Succeeded")
        for row in self.open_rows:  # the execution ended them: a Fail state, or whatever ran when it stopped
            row["exited"] = event["timestamp"]
            if row["type"] != "Fail" and not succeeded:
                row["error"] = f"interrupted by {kind}"
        self.open_rows.clear()
        if succeeded:
            return
        message = _failure_message(event)
        self.rows.append(
            {
                "state": "(execution)",
                "type": kind,
                "entered": event["timestamp"],
                "exited": event["timestamp"],
                "failures": [message],
                "error": message,
            }
        )


def describe_history(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Collapse an execution history into one row per state entered.

    A row has ``state``, ``type``, ``entered``, ``exited`` (None while it runs), ``failures`` (the
    messages of its failed attempts, oldest first) and ``error``: the failure that ended the state
    (a retried attempt that later succeeded is not an error, it only counts in ``failures``).
    An execution that failed, timed out or was aborted adds a last ``(execution)`` row.
    """
    history = _History()
    for event in events:
        history.add(event)
    return history.rows


def _error_status(row: dict[str, Any]) -> str:
    notes = []
    if len(row["failures"]) > 1:
        notes.append(f"{len(row['failures'])} attempts")
    if row["exited"] is not None and row["type"] not in _NOT_CAUGHT and row["failures"]:
        notes.append("caught")
    return f"✗ {row['error']}" + (f" ({', '.join(notes)})" if notes else "")


def _row_status(row: dict[str, Any]) -> str:
    if row["type"] == "Fail":
        return "✗ (a Fail state: ends the execution)"
    if row["error"]:
        return _error_status(row)
    if row["exited"] is None:
        return "… running"
    retries = len(row["failures"])
    if retries:
        attempts = "retry" if retries == 1 else "retries"
        return f"✓ after {retries} {attempts} (last: {row['failures'][-1].split(':')[0]})"
    return "✓"


def execution_report(label: str, described: dict[str, Any], history: list[dict[str, Any]]) -> list[str]:
    """The lines ``plot-palette executions`` prints for one execution (describe_execution + history)."""
    name = str(described["executionArn"]).split(":")[-1]
    lines = [f"{label} execution {name}: {described['status']}"]
    stopped = f", stopped {_fmt_time(described['stopDate'])}" if described.get("stopDate") else ""
    lines.append(f"  started {_fmt_time(described['startDate'])}{stopped}")
    rows = describe_history(history)
    width = max([40, *(len(row["state"]) for row in rows)])
    for row in rows:
        took = ""
        if row["exited"] is not None and isinstance(row["entered"], datetime):
            took = f"{(row['exited'] - row['entered']).total_seconds() * 1000:8.0f} ms"
        lines.append(f"  {_fmt_time(row['entered'])}  {took:>11}  {row['state']:<{width}} {_row_status(row)}")
    return lines


# --------------------------------------------------------------------------- finding the executions


def _execution_exists(sfn: Any, arn: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        sfn.describe_execution(executionArn=arn)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in {"ExecutionDoesNotExist", "InvalidArn"}:
            return False
        raise
    return True


def _executions_naming(sfn: Any, label: str, machine_arn: str, job_id: str) -> list[tuple[str, str]]:
    """Executions of a machine whose input names the job (cancellation, cleanup: not named by job)."""
    found = []
    for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=machine_arn):
        for execution in page["executions"]:
            described = sfn.describe_execution(executionArn=execution["executionArn"])
            if job_id in (described.get("input") or ""):
                found.append((label, execution["executionArn"]))
    return found


def find_executions(sfn: Any, machines: dict[str, str], job_id: str) -> list[tuple[str, str]]:
    """(label, execution ARN) of every execution about the job: the lifecycle first (named by the job)."""
    lifecycle = machines["LIFECYCLE_STATE_MACHINE_ARN"]
    region, account, _, name = lifecycle.split(":")[3:7]
    lifecycle_execution = f"arn:aws:states:{region}:{account}:execution:{name}:{job_id}"
    executions = [("lifecycle", lifecycle_execution)] if _execution_exists(sfn, lifecycle_execution) else []
    for variable, arn in machines.items():
        if arn != lifecycle:
            label = variable.removesuffix(_STATE_MACHINE_SUFFIX).lower()
            executions.extend(_executions_naming(sfn, label, arn, job_id))
    return executions


def _print_execution(sfn: Any, label: str, arn: str) -> None:
    described = sfn.describe_execution(executionArn=arn)
    history: list[dict[str, Any]] = []
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
        history.extend(page["events"])
    print("\n".join(execution_report(label, described, history)))
    print()


def run(args: argparse.Namespace) -> int:
    job_id = args.job_id.strip()
    if not _JOB_ID.fullmatch(job_id):
        raise CliError(f"{args.job_id!r} is not a job id (a job id is a UUID, as POST /jobs answers)", 2)
    info = running(args)
    sfn = info.client("stepfunctions")
    machines = {k: v for k, v in info.environment.items() if k.endswith(_STATE_MACHINE_SUFFIX) and v}
    executions = find_executions(sfn, machines, job_id)
    if not executions:
        raise CliError(
            f"no execution for job {job_id}: a job gets its lifecycle execution when it is promoted "
            "out of the queue (a QUEUED job has none yet); check the id with GET /jobs/{job_id}",
            code=2,
        )
    for label, arn in executions:
        _print_execution(sfn, label, arn)
    return 0
