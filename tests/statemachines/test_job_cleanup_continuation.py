"""The cleanup continues in a new execution after CleanupRoundsPerExecution rounds (here 2, on the
second deployment of the file), so a very large job never reaches the execution history limit."""

from __future__ import annotations

import hashlib
import json

import pytest

from functions.common.events import JobDeleted
from tests.statemachines.conftest import Env
from tests.statemachines.test_job_cleanup import (
    COST_PAGE,
    LEFTOVERS,
    NO_COSTS,
    NO_OBJECTS,
    OBJECT_PAGE,
    START,
    cost_records,
    finished_job,
    object_keys,
    put_cost_records,
    put_objects,
)
from tests.support.ministack import Execution

pytestmark = pytest.mark.statemachines

MACHINE = "job_cleanup_two_rounds"
MORE_COSTS_LEFT = [
    "Query a page of cost records",
    "Check the page of cost records",
    "Continue the cleanup in a new execution",
]
FINISHED = [*LEFTOVERS, "Delete the job item and release its template", "Emit job deleted"]


def continuation_name(job_id: str, generation: int, request: dict[str, object]) -> str:
    """The documented name: job id, generation, MD5 of the deletion request's event id."""
    return f"{job_id}-{generation}-{hashlib.md5(str(request['id']).encode()).hexdigest()}"


def test_a_long_cleanup_continues_in_new_executions_until_it_is_done(env: Env) -> None:
    job = finished_job(env)
    job_id = job["job_id"]
    put_objects(env, [f"jobs/{job_id}/checkpoint.json"])
    put_cost_records(env, job_id, 80)  # 4 pages: 1 + 1 rounds, then 2, then 1 (and the object page)

    root_arn = env.request_deletion(job, machine=MACHINE)
    request = json.loads(env.stack.describe(root_arn)["input"])
    root = env.stack.wait(root_arn)

    assert root.status == "SUCCEEDED"
    assert root.path == [
        *START,
        *OBJECT_PAGE,  # round 1
        *NO_OBJECTS,
        *COST_PAGE,  # round 2
        *MORE_COSTS_LEFT,
        "The cleanup continues in a new execution",
    ]
    # No snapshot of the table here: the continuation is already running and deleting. Each
    # execution's path says which pages it deleted; the job item goes last, in the last execution.

    first = env.stack.wait(root.output["continuation"]["execution_arn"])
    assert first.description["name"] == continuation_name(job_id, 1, request)
    assert json.loads(first.description["input"]) == {
        "id": request["id"],
        "detail": request["detail"],
        "continuation": {"generation": 1},
        "AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID": root_arn,
    }
    assert first.path == [
        *START,
        *NO_OBJECTS,
        *COST_PAGE,
        *COST_PAGE,
        *MORE_COSTS_LEFT,
        "The cleanup continues in a new execution",
    ]

    second = env.stack.wait(first.output["continuation"]["execution_arn"])
    assert second.description["name"] == continuation_name(job_id, 2, request)
    assert json.loads(second.description["input"])["continuation"] == {"generation": 2}
    assert second.status == "SUCCEEDED"
    assert second.path == [*START, *NO_OBJECTS, *COST_PAGE, *NO_COSTS, *FINISHED]
    assert "continuation" not in second.output

    assert object_keys(env, f"jobs/{job_id}/") == []
    assert cost_records(env, job_id) == []
    assert not env.queue_item_exists(job)
    assert env.job(job_id) == {}
    assert env.events(job_id, expected=1) == [JobDeleted(job_id=job_id, user_id=job["user_id"])]
    assert len(executions_of(env, job_id)) == 2  # exactly one execution per generation


def test_a_continuation_that_already_exists_ends_this_execution_and_deletes_nothing_more(env: Env) -> None:
    """AWS refuses a taken name with StepFunctions.ExecutionAlreadyExistsException (the shim names
    MiniStack's refusal so; see test_stepfunctions_shim): the request was already continued."""
    job = finished_job(env)
    put_cost_records(env, job["job_id"], 60)

    execution = env.stack.wait(
        env.request_deletion(job, test_case="ContinuationAlreadyStarted", machine=MACHINE)
    )

    assert execution.status == "SUCCEEDED"
    assert execution.path == [
        *START,
        *NO_OBJECTS,
        *COST_PAGE,
        *COST_PAGE,
        *MORE_COSTS_LEFT,
        "The cleanup was already continued",
    ]
    assert len(cost_records(env, job["job_id"])) == 10
    assert env.job(job["job_id"])["status"] == "COMPLETED"
    assert executions_of(env, job["job_id"]) == []
    assert env.events(job["job_id"], expected=0, timeout=0.5) == []


def test_a_new_request_after_a_continuation_failed_finishes_the_job_under_its_own_names(env: Env) -> None:
    job = finished_job(env, "FAILED")
    put_cost_records(env, job["job_id"], 110)

    failed_arn = env.request_deletion(job, test_case="ContinuationKeepsFailing", machine=MACHINE)
    failed_request = json.loads(env.stack.describe(failed_arn)["input"])
    failed = env.stack.wait(failed_arn)

    assert failed.status == "FAILED"
    assert failed.path == [*START, *NO_OBJECTS, *COST_PAGE, *COST_PAGE, *MORE_COSTS_LEFT]
    assert len(failed.failures("Continue the cleanup in a new execution")) == 6
    assert len(cost_records(env, job["job_id"])) == 60

    rerun_arn = env.request_deletion(job, machine=MACHINE)
    rerun_request = json.loads(env.stack.describe(rerun_arn)["input"])
    rerun = env.stack.wait(rerun_arn)
    continued = env.stack.wait(rerun.output["continuation"]["execution_arn"])

    assert rerun.path == [
        *START,
        *NO_OBJECTS,
        *COST_PAGE,
        *COST_PAGE,
        *MORE_COSTS_LEFT,
        "The cleanup continues in a new execution",
    ]
    assert continued.path == [*START, *NO_OBJECTS, *COST_PAGE, *NO_COSTS, *FINISHED]
    # Each request has its own chain of names, so a later request never collides with an earlier one.
    assert continued.description["name"] == continuation_name(job["job_id"], 1, rerun_request)
    assert continued.description["name"] != continuation_name(job["job_id"], 1, failed_request)
    assert env.job(job["job_id"]) == {}
    assert cost_records(env, job["job_id"]) == []
    assert [type(e) for e in env.events(job["job_id"], expected=1)] == [JobDeleted]


def executions_of(env: Env, job_id: str) -> list[Execution]:
    """The continuations of a job's cleanup on the two-round deployment (named after the job)."""
    sfn = env.client("stepfunctions")
    pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=env.stack.arns[MACHINE])
    return [
        Execution(e["executionArn"], env.stack.describe(e["executionArn"]), [])
        for page in pages
        for e in page["executions"]
        if e["name"].startswith(f"{job_id}-")
    ]
