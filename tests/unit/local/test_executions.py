"""The executions table of ``plot-palette executions JOB_ID``, from histories recorded on MiniStack.

tests/events/sfn_lifecycle_*.json were recorded by running statemachines/job_lifecycle.asl.json on
MiniStack 1.5.33 (the tests/statemachines stack, its mock config's test cases and test worker):
``retried_then_succeeded`` (TransientErrors), ``worker_failed`` (the worker reports failure),
``running`` (waiting for the worker) and ``mark_running_kept_failing`` (MarkRunningKeepsFailing).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from local.commands.executions import describe_history, execution_report
from tests.unit.local.conftest import load_history

pytestmark = pytest.mark.unit

STARTED = [
    "Read lifecycle settings",
    "Mark job running",
    "Emit job started",
    "Send work item and wait for the worker",
]


def _status_by_state(events: list[dict[str, Any]], lines: list[str]) -> dict[str, str]:
    """Each state's status text, from the report's rows (one line per row, after two header lines)."""
    rows = describe_history(events)
    assert len(lines) == 2 + len(rows)
    return {
        row["state"]: line.split(row["state"], 1)[1].strip()
        for row, line in zip(rows, lines[2:], strict=True)
    }


def test_a_succeeded_execution_with_retries_shows_them_without_a_failure_mark() -> None:
    described, events = load_history("sfn_lifecycle_retried_then_succeeded")
    rows = describe_history(events)
    assert [row["state"] for row in rows] == [
        *STARTED,
        "Mark job completed",
        "Release job slot",
        "Record job slot released",
        "Choose the terminal event",
        "Emit job completed",
    ]
    assert all(row["error"] is None and row["exited"] is not None for row in rows)
    assert [len(row["failures"]) for row in rows] == [0, 2, 1, 1, 1, 2, 0, 0, 1]

    lines = execution_report("lifecycle", described, events)
    assert lines[0] == "lifecycle execution b82a94f2-6ee5-4c54-a04f-3fb7bf86a0bf: SUCCEEDED"
    assert lines[1] == "  started 16:18:17.630, stopped 16:18:17.939"
    status = _status_by_state(events, lines)
    assert (
        status["Mark job running"]
        == "✓ after 2 retries (last: DynamoDB.ProvisionedThroughputExceededException)"
    )
    assert status["Emit job started"] == "✓ after 1 retry (last: EventBridge.InternalException)"
    assert status["Record job slot released"] == "✓"
    assert "✗" not in "\n".join(lines)


def test_durations_come_from_entered_and_exited_timestamps() -> None:
    described, events = load_history("sfn_lifecycle_retried_then_succeeded")
    waiting = next(row for row in describe_history(events) if row["state"] == STARTED[-1])
    assert waiting["exited"] - waiting["entered"] == timedelta(milliseconds=142)
    line = next(line for line in execution_report("lifecycle", described, events) if STARTED[-1] in line)
    assert line.startswith("  16:18:17.785       142 ms  Send work item and wait for the worker")


def test_a_caught_failure_is_marked_on_its_state_and_the_path_goes_on() -> None:
    described, events = load_history("sfn_lifecycle_worker_failed")
    lines = execution_report("lifecycle", described, events)
    status = _status_by_state(events, lines)
    assert status[STARTED[-1]] == "✗ GenerationError: the model failed on batch 1 (caught)"
    assert status["Mark job failed"] == "✓"
    assert status["Emit job failed"] == "✓"
    assert lines[0].endswith(": SUCCEEDED")  # the job failed; its lifecycle did its job


def test_a_running_execution_shows_the_state_it_waits_in() -> None:
    described, events = load_history("sfn_lifecycle_running")
    lines = execution_report("lifecycle", described, events)
    assert lines[0].endswith(": RUNNING")
    assert lines[1] == "  started 16:18:18.476"  # no stop date yet
    assert lines[-1].endswith("Send work item and wait for the worker   … running")
    assert describe_history(events)[-1]["exited"] is None


def test_a_failed_execution_ends_with_its_fail_state_and_the_execution_error() -> None:
    described, events = load_history("sfn_lifecycle_mark_running_kept_failing")
    rows = describe_history(events)
    assert rows[-2]["state"] == "Job lifecycle failed"
    assert rows[-2]["exited"] is not None  # a Fail state has no Exited event: the execution ended it
    assert rows[-1]["state"] == "(execution)"
    assert rows[-1]["error"].startswith(
        "JobLifecycleFailed: Mark job running did not succeed after its retries"
    )

    lines = execution_report("lifecycle", described, events)
    status = _status_by_state(events, lines)
    assert status["Mark job running"] == (
        "✗ DynamoDB.InternalServerErrorException: injected by the mock config (6 attempts, caught)"
    )
    assert status["Give up marking the job running"] == "✓"
    assert status["Job lifecycle failed"] == "✗ (a Fail state: ends the execution)"
    assert "… running" not in "\n".join(lines)
    # Long state names widen the column instead of running into the status.
    assert "Record the job slot released after the lifecycle failed ✓" in "\n".join(lines)


def test_an_aborted_execution_marks_the_state_it_interrupted() -> None:
    described, events = load_history("sfn_lifecycle_running")
    aborted_at = events[-1]["timestamp"] + timedelta(seconds=5)
    events.append(
        {
            "id": len(events) + 1,
            "type": "ExecutionAborted",
            "timestamp": aborted_at,
            "executionAbortedEventDetails": {},
        }
    )
    rows = describe_history(events)
    assert rows[-2]["state"] == STARTED[-1]
    assert rows[-2]["error"] == "interrupted by ExecutionAborted"
    assert rows[-1]["error"] == "ExecutionAborted"
    lines = execution_report("lifecycle", {**described, "status": "ABORTED", "stopDate": aborted_at}, events)
    assert lines[-2].endswith("✗ interrupted by ExecutionAborted")


def test_a_long_cause_is_shown_on_one_line_and_cut() -> None:
    _, events = load_history("sfn_lifecycle_worker_failed")
    failed = next(e for e in events if e["type"] == "TaskFailed")
    failed["taskFailedEventDetails"]["cause"] = "line one\nline two\t" + "x" * 500
    rows = describe_history(events)
    error = next(row["error"] for row in rows if row["error"])
    assert error.startswith("GenerationError: line one line two x")
    assert len(error) == len("GenerationError: ") + 200
    assert error.endswith("…")
