"""Structural checks of every ASL file (MiniStack accepts broken definitions, so they live here)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from functions.common.events import EVENTS_BY_DETAIL_TYPE, SOURCE_JOBS
from functions.worker.service import BUDGET_EXCEEDED, JOB_CANCELLED
from tests.support.ministack import placeholders_in
from tests.support.synthesized import STATEMACHINES_DIR, asl_files

pytestmark = pytest.mark.statemachines

FILES = asl_files()
README = STATEMACHINES_DIR / "README.md"
TRANSITION_FIELDS = ("Next", "Default")


def documented_placeholders() -> set[str]:
    """The placeholders of the README's table (rows starting with | `${Name}` |)."""
    return set(re.findall(r"^\| `\$\{([A-Za-z0-9]+)\}` \|", README.read_text(), flags=re.MULTILINE))


def states_of(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every state, including those of Map/Parallel sub-machines, by name."""
    found: dict[str, dict[str, Any]] = {}
    for name, state in definition["States"].items():
        found[name] = state
        for sub in [state.get("ItemProcessor") or state.get("Iterator"), *state.get("Branches", [])]:
            if sub:
                found.update(states_of(sub))
    return found


def successors(state: dict[str, Any]) -> list[str]:
    nexts = [state[f] for f in TRANSITION_FIELDS if f in state]
    nexts += [choice["Next"] for choice in state.get("Choices", [])]
    nexts += [catcher["Next"] for catcher in state.get("Catch", [])]
    return nexts


def ends(state: dict[str, Any]) -> bool:
    return state["Type"] in ("Succeed", "Fail") or state.get("End") is True


def state_problems(name: str, state: dict[str, Any], states: dict[str, Any]) -> list[str]:
    """Dangling transitions and malformed endings of one state, and the problems of its sub-machines."""
    problems = [f"{name!r} goes to missing state {t!r}" for t in successors(state) if t not in states]
    if state["Type"] not in ("Choice", "Succeed", "Fail") and ("Next" in state) == bool(state.get("End")):
        problems.append(f"{name!r} needs exactly one of Next and End")
    if state["Type"] == "Choice" and "Default" not in state:
        problems.append(f"Choice {name!r} has no Default")
    for sub in [state.get("ItemProcessor") or state.get("Iterator"), *state.get("Branches", [])]:
        if sub:
            problems += check_machine(sub)
    return problems


def reachable_from(start: str, states: dict[str, Any]) -> set[str]:
    reachable, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in reachable or name not in states:
            continue
        reachable.add(name)
        todo += successors(states[name])
    return reachable


def ending(states: dict[str, Any]) -> set[str]:
    """The states from which some path reaches an end."""
    can_end = {name for name, state in states.items() if ends(state)}
    changed = True
    while changed:
        grown = {n for n, state in states.items() if any(t in can_end for t in successors(state))}
        changed = not grown <= can_end
        can_end |= grown
    return can_end


def check_machine(definition: dict[str, Any]) -> list[str]:
    """Problems of one (sub-)machine: dangling transitions, unreachable states, dead ends."""
    problems: list[str] = []
    states = definition["States"]
    if definition["StartAt"] not in states:
        problems.append(f"StartAt {definition['StartAt']!r} is not a state")
    for name, state in states.items():
        problems += state_problems(name, state, states)
    reachable = reachable_from(definition["StartAt"], states)
    problems += [f"{name!r} is unreachable" for name in sorted(set(states) - reachable)]
    problems += [f"{name!r} never reaches an end" for name in sorted(set(states) - ending(states))]
    return problems


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_transition_exists_and_every_path_ends(path: Path) -> None:
    assert check_machine(json.loads(path.read_text())) == []


def test_the_checker_finds_broken_definitions() -> None:
    broken = {
        "StartAt": "First",
        "States": {
            "First": {"Type": "Pass", "Next": "Missing"},
            "Loop": {"Type": "Pass", "Next": "Loop"},
            "Both": {"Type": "Pass", "Next": "First", "End": True},
        },
    }
    assert check_machine(broken) == [
        "'First' goes to missing state 'Missing'",
        "'Both' needs exactly one of Next and End",
        "'Both' is unreachable",
        "'Loop' is unreachable",
        "'First' never reaches an end",
        "'Loop' never reaches an end",
    ]


def test_every_placeholder_is_documented() -> None:
    # That the synthesized template substitutes exactly these, per machine and stage, is
    # tests/infra/test_orchestration.py's; the MiniStack tests deploy with the template's values.
    used = set().union(*(placeholders_in(path.read_text()) for path in FILES))
    assert used == documented_placeholders()


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_task_retries_and_never_retries_a_failed_condition(path: Path) -> None:
    for name, state in states_of(json.loads(path.read_text())).items():
        if state["Type"] != "Task":
            continue
        retried = {error for retrier in state.get("Retry", []) for error in retrier["ErrorEquals"]}
        assert retried, f"{name!r} has no Retry"
        assert not retried & {"States.ALL", "DynamoDB.ConditionalCheckFailedException"}, name
        for retrier in state["Retry"]:
            assert retrier.get("BackoffRate", 1) > 1, f"{name!r} retries without backoff"
        if "dynamodb:" in state["Resource"] and "ConditionExpression" in state.get("Parameters", {}):
            caught = {error for catcher in state.get("Catch", []) for error in catcher["ErrorEquals"]}
            assert "DynamoDB.ConditionalCheckFailedException" in caught, (
                f"{name!r} does not catch its condition"
            )


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_state_names_are_sentences(path: Path) -> None:
    for name in states_of(json.loads(path.read_text())):
        assert re.fullmatch(r"[A-Z][a-z]*( [A-Za-z'\-]+)+", name), name


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_emitted_events_match_their_typed_models(path: Path) -> None:
    emitted = 0
    for name, state in states_of(json.loads(path.read_text())).items():
        if state.get("Resource") != "arn:aws:states:::events:putEvents":
            continue
        for entry in state["Parameters"]["Entries"]:
            emitted += 1
            assert entry["Source"] == SOURCE_JOBS
            assert entry["EventBusName"] == "${EventBusName}"
            model = EVENTS_BY_DETAIL_TYPE[entry["DetailType"]]
            fields = {key.removesuffix(".$") for key in entry["Detail"]}
            required = {f for f, info in model.model_fields.items() if info.is_required()}
            assert required <= fields <= set(model.model_fields), f"{name!r}: {sorted(fields)}"
    assert emitted > 0


PARTIAL_EXPORT_WRITES = (
    "Mark job budget exceeded with its partial export",
    "Mark job cancelled with its partial export",
    "Mark job failed with its partial export",
)
TERMINAL_WRITES = (
    "Mark job completed",
    "Mark job budget exceeded",
    "Mark job cancelled",
    "Mark job failed",
    *PARTIAL_EXPORT_WRITES,
)


def test_final_counts_and_cost_are_written_with_the_status_that_ends_an_exported_job() -> None:
    """Issue 14 item 14: COMPLETED (and a stop with a partial export) is written in the same update as
    the export's records and the summed cost, and marks the totals final for the rollup."""
    states = json.loads((STATEMACHINES_DIR / "job_lifecycle.asl.json").read_text())["States"]
    for name in ("Mark job completed", *PARTIAL_EXPORT_WRITES):
        params = states[name]["Parameters"]
        for assignment in (
            "records_generated = :records",
            "tokens_used = :tokens",
            "#cost = :cost",
            "totals_final_at = :now",
            "#result = :result",
        ):
            assert assignment in params["UpdateExpression"], (name, assignment)
        values = params["ExpressionAttributeValues"]
        assert set(values[":cost"]["M"]) == {"bedrock", "fargate", "s3", "total"}
        assert values[":result"]["M"]["partial"] == {"BOOL": name != "Mark job completed"}


def test_the_lifecycle_follows_the_protocol_order() -> None:
    """Terminal write, then slot release, then slot_released_at, then the event — on every path."""
    states = json.loads((STATEMACHINES_DIR / "job_lifecycle.asl.json").read_text())["States"]
    for terminal in TERMINAL_WRITES:
        params = states[terminal]["Parameters"]
        assert params["ConditionExpression"] == "#status = :running"
        assert "user_status = :user_status" in params["UpdateExpression"]
        assert states[terminal]["Next"] == "Release job slot"
    release = states["Release job slot"]
    assert release["Parameters"]["UpdateExpression"] == "DELETE holders :job"
    assert release["Parameters"]["ConditionExpression"] == "contains(holders, :job_id)"
    assert release["Next"] == release["Catch"][0]["Next"] == "Record job slot released"
    assert states["Record job slot released"]["Next"] == "Choose the terminal event"


LIFECYCLE_SLOT_RELEASES = {
    "Release job slot",
    "Release slot without a status change",
    "Release the job slot after the lifecycle failed",
}


def test_no_lifecycle_execution_ends_holding_the_slot_of_a_job_it_owns() -> None:
    """The execution starts holding its job's slot. Every way out before a slot release (an end
    state, or a task error no Catch takes) is a defect, except the Fail state that reports the job
    could not even be marked FAILED. After a release has been attempted, a failure leaves a job that
    is terminal or owned by the cancellation state machine, whose slot the queue promoter frees."""
    definition = json.loads((STATEMACHINES_DIR / "job_lifecycle.asl.json").read_text())
    states = definition["States"]
    before_release, todo = set(), [definition["StartAt"]]
    while todo:
        name = todo.pop()
        if name in before_release or name in LIFECYCLE_SLOT_RELEASES:
            continue
        before_release.add(name)
        todo += successors(states[name])
    assert "Mark job running" in before_release
    for name in sorted(before_release - {"Job could not be marked failed"}):
        state = states[name]
        assert not ends(state), f"{name!r} ends the execution while it holds the slot"
        if state["Type"] == "Task":
            caught = {error for catcher in state.get("Catch", []) for error in catcher["ErrorEquals"]}
            assert "States.ALL" in caught, f"{name!r} can fail the execution while it holds the slot"


def test_the_last_resort_marks_failed_then_releases_then_records_then_emits() -> None:
    states = json.loads((STATEMACHINES_DIR / "job_lifecycle.asl.json").read_text())["States"]
    mark = states["Mark job failed after the lifecycle failed"]
    # Only a job this lifecycle still owns: RUNNING, or QUEUED without a cancellation request.
    assert mark["Parameters"]["ConditionExpression"] == (
        "#status = :running OR (#status = :queued AND attribute_not_exists(cancel_requested_at))"
    )
    assert "user_status = :user_status" in mark["Parameters"]["UpdateExpression"]
    status_writes = [name for name, state in states.items() if "SET #status" in str(state.get("Parameters"))]
    # running, four terminal statuses, three of them with a partial export, and the last resort itself
    assert len(status_writes) == 9
    for name in [*status_writes, "Resume the job this execution already marked running"]:
        if name == "Mark job failed after the lifecycle failed":
            continue
        (last,) = [c for c in states[name]["Catch"] if "States.ALL" in c["ErrorEquals"]]
        assert states[last["Next"]]["Next"] == "Mark job failed after the lifecycle failed", name
    release = states["Release the job slot after the lifecycle failed"]
    condition_failed = [
        c for c in mark["Catch"] if "DynamoDB.ConditionalCheckFailedException" in c["ErrorEquals"]
    ]
    assert mark["Next"] == condition_failed[0]["Next"] == "Release the job slot after the lifecycle failed"
    assert release["Parameters"] == states["Release job slot"]["Parameters"]
    assert release["Next"] == "Record the job slot released after the lifecycle failed"
    assert states[release["Next"]]["Next"] == "Check whether the job was marked failed"
    assert states["Emit job failed after the lifecycle failed"]["Next"] == "Job lifecycle failed"


def _plan(num_records: int, batch_size: int, partition_records: int, task_size: str | None) -> dict[str, Any]:
    """Evaluate the lifecycle's own 'Plan the partitions' expression with the JSONata engine MiniStack
    runs, on the input that state receives."""
    import jsonata

    states = json.loads((STATEMACHINES_DIR / "job_lifecycle.asl.json").read_text())["States"]
    expression = states["Plan the partitions"]["Output"].removeprefix("{%").removesuffix("%}")
    sizes = ("small", "medium", "large", "xlarge")
    attributes = {"task_size": {"S": task_size}} if task_size else {}
    state_input = {
        "job_id": "j",
        "settings": {
            "batch_size": batch_size,
            "partition_records": partition_records,
            "partition_concurrency": 10,
            "work_queues": {size: f"queue-{size}" for size in sizes},
        },
        "job": {"num_records": num_records, "attributes": attributes},
    }
    output: dict[str, Any] = jsonata.Jsonata(expression).evaluate(None, {"states": {"input": state_input}})
    assert "attributes" not in output["job"]  # the raw item is not carried into the Map
    return dict(output["plan"])


def test_a_million_record_job_is_planned_as_at_most_500_partitions_of_whole_batches() -> None:
    plan = _plan(1_000_000, batch_size=10, partition_records=1000, task_size="xlarge")
    assert plan["batches"] == 100_000
    assert (plan["partition_count"], plan["partition_batches"]) == (500, 200)  # 2,000 records each
    assert plan["partitions"] == list(range(500))
    assert (plan["concurrency"], plan["queue_url"], plan["task_size"]) == (10, "queue-xlarge", "xlarge")
    assert len(json.dumps(plan)) < 4 * 1024  # far below the 256 KB payload limit


def test_a_small_job_is_planned_as_partitions_of_partition_records_and_defaults_to_medium() -> None:
    plan = _plan(25, batch_size=2, partition_records=4, task_size=None)
    assert (plan["batches"], plan["partition_batches"], plan["partition_count"]) == (13, 2, 7)
    assert (plan["concurrency"], plan["queue_url"], plan["task_size"]) == (7, "queue-medium", "medium")


def test_the_lifecycle_catches_the_real_workers_error_names() -> None:
    """The worker and the ASL agree on the stop errors through functions/worker/service.py: the Map
    sorts a partition's error into its stop status, and a partition not sent fails with the same."""
    definition = json.loads((STATEMACHINES_DIR / "job_lifecycle.asl.json").read_text())
    caught = {
        c["ErrorEquals"][0]: c["Output"] for c in definition["States"]["Generate the partitions"]["Catch"]
    }
    assert "'stop': 'BUDGET_EXCEEDED'" in caught[BUDGET_EXCEEDED]
    assert "'stop': 'CANCELLED'" in caught[JOB_CANCELLED]
    failed = {s["Error"] for s in states_of(definition).values() if s["Type"] == "Fail" and "Error" in s}
    assert {BUDGET_EXCEEDED, JOB_CANCELLED} <= failed


PARTITION_READ = "Read the job before sending a partition"
PARTITION_SEND = "Send a partition to a worker and wait"
WORKER_LOST = ("States.HeartbeatTimeout", "WorkerError")


def _partition_states() -> dict[str, Any]:
    definition = json.loads((STATEMACHINES_DIR / "job_lifecycle.asl.json").read_text())
    processor = definition["States"]["Generate the partitions"]["ItemProcessor"]
    assert processor["StartAt"] == PARTITION_READ
    return dict(processor["States"])


def test_a_partition_whose_worker_died_is_sent_again_only_through_the_job_read() -> None:
    """Issue 11: a Task-level Retry would send the work item again without reading the job, so a
    cancelled or over-budget job could get one more work item. The worker's loss is caught instead, and
    every way from the catch back to the send passes the read and the Choice that checks its answer."""
    states = _partition_states()
    send = states[PARTITION_SEND]
    retried = {error for retrier in send["Retry"] for error in retrier["ErrorEquals"]}
    assert not retried & set(WORKER_LOST)
    (catcher,) = [c for c in send["Catch"] if set(WORKER_LOST) <= set(c["ErrorEquals"])]
    # Walk from the catch without entering the read: the send must be out of reach.
    seen, todo = set(), [catcher["Next"]]
    while todo:
        name = todo.pop()
        if name in seen or name == PARTITION_READ:
            continue
        seen.add(name)
        todo += successors(states[name])
    assert PARTITION_SEND not in seen, f"{sorted(seen)} reach the send without reading the job"
    assert PARTITION_READ in successors(states[catcher["Next"]])
    assert states[PARTITION_READ]["Next"] == "Check whether the job still wants this partition"


def test_a_partition_is_sent_again_at_most_twice_with_the_backoff_of_the_former_retry() -> None:
    """Bound and backoff as the Task Retry had them (MaxAttempts 2, IntervalSeconds 5, BackoffRate 2,
    full jitter), evaluated with the JSONata engine MiniStack runs; the third loss fails the iteration
    with that worker's own error."""
    import jsonata

    states = _partition_states()
    wait = states[states[PARTITION_SEND]["Catch"][0]["Next"]]
    assert (wait["Type"], wait["Next"]) == ("Wait", PARTITION_READ)
    seconds = jsonata.Jsonata(wait["Seconds"].removeprefix("{%").removesuffix("%}"))
    output = jsonata.Jsonata(wait["Output"].removeprefix("{%").removesuffix("%}"))
    for retries, bound in ((0, 5), (1, 10), (2, 0)):
        state_input = {"partition": 3, "retries": retries, "worker_failure": {"Error": "WorkerError"}}
        context = {"states": {"input": state_input}}
        drawn = {seconds.evaluate(None, context) for _ in range(500)}
        assert all(float(s).is_integer() for s in drawn)
        assert (min(drawn), max(drawn)) == (0, bound), retries
        assert output.evaluate(None, context) == {**state_input, "retries": retries + 1}
    check = states["Check whether the job still wants this partition"]
    (bound_choice,) = [c for c in check["Choices"] if c.get("Variable") == "$.retries"]
    # Checked after cancellation and budget: a cancelled job's lost worker ends the job CANCELLED.
    assert (bound_choice["NumericGreaterThan"], check["Choices"][-1]) == (2, bound_choice)
    gave_up = states[bound_choice["Next"]]
    assert gave_up == {
        "Type": "Fail",
        "Comment": gave_up["Comment"],
        "ErrorPath": "$.worker_failure.Error",
        "CausePath": "$.worker_failure.Cause",
    }
    definition = json.loads((STATEMACHINES_DIR / "job_lifecycle.asl.json").read_text())
    assert definition["States"]["Generate the partitions"]["ItemSelector"]["retries"] == 0
