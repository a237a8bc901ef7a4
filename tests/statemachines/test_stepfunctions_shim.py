"""local/shims/stepfunctions.py: what it adds to MiniStack 1.5.33, checked on the running emulator."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import pytest

from local.shims.stepfunctions import (
    delete_objects_request_body,
    optimized_start_execution_error,
    parse_delete_result,
)
from tests.statemachines.conftest import SHIM_CHECK, Env
from tests.support.ministack import ROLE_ARN

pytestmark = pytest.mark.statemachines


def create_machine(env: Env, definition: dict[str, Any], name: str | None = None) -> str:
    return str(
        env.client("stepfunctions").create_state_machine(
            name=name or f"shim-check-{uuid.uuid4().hex[:8]}",
            definition=json.dumps(definition),
            roleArn=ROLE_ARN,
        )["stateMachineArn"]
    )


def run(env: Env, machine_arn: str, payload: Any, timeout: float = 20) -> Any:
    arn = env.client("stepfunctions").start_execution(stateMachineArn=machine_arn, input=json.dumps(payload))[
        "executionArn"
    ]
    return env.stack.wait(arn, timeout=timeout)


def test_delete_objects_wire_body_and_result_parsing() -> None:
    body = delete_objects_request_body([{"Key": "a&b"}, {"Key": "c", "VersionId": "v1"}], quiet=True)
    assert body.decode() == (
        '<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Object><Key>a&amp;b</Key></Object>'
        "<Object><Key>c</Key><VersionId>v1</VersionId></Object><Quiet>true</Quiet></Delete>"
    )
    result = parse_delete_result(
        '<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Deleted><Key>a</Key></Deleted>'
        "<Error><Key>b</Key><Code>AccessDenied</Code><Message>no</Message></Error></DeleteResult>"
    )
    assert result == {
        "Deleted": [{"Key": "a"}],
        "Errors": [{"Key": "b", "Code": "AccessDenied", "Message": "no"}],
    }
    assert parse_delete_result('<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>') == {}


DELETE_MACHINE = {
    "StartAt": "Delete the objects",
    "States": {
        "Delete the objects": {
            "Type": "Task",
            "Resource": "arn:aws:states:::aws-sdk:s3:deleteObjects",
            "Parameters": {"Bucket.$": "$.bucket", "Delete": {"Objects.$": "$.objects", "Quiet": False}},
            "End": True,
        }
    },
}


def test_delete_objects_deletes_exactly_the_given_keys(env: Env) -> None:
    s3, prefix = env.client("s3"), f"shim/{uuid.uuid4().hex}/"
    for name in ("a", "b", "keep"):
        s3.put_object(Bucket=env.stack.bucket, Key=prefix + name, Body=b"x")
    machine = create_machine(env, DELETE_MACHINE)

    execution = run(
        env, machine, {"bucket": env.stack.bucket, "objects": [{"Key": prefix + k} for k in "abz"]}
    )

    assert execution.status == "SUCCEEDED"
    assert sorted(d["Key"] for d in execution.output["Deleted"]) == [prefix + k for k in "abz"]
    remaining = s3.list_objects_v2(Bucket=env.stack.bucket, Prefix=prefix).get("Contents", [])
    assert [o["Key"] for o in remaining] == [prefix + "keep"]


def test_delete_objects_refuses_more_than_1000_keys_and_a_missing_bucket(env: Env) -> None:
    machine = create_machine(env, DELETE_MACHINE)

    too_many = run(
        env, machine, {"bucket": env.stack.bucket, "objects": [{"Key": f"k{i}"} for i in range(1001)]}
    )
    no_bucket = run(env, machine, {"bucket": "no-such-bucket", "objects": [{"Key": "k"}]})

    assert (too_many.status, too_many.description["error"]) == ("FAILED", "S3.S3Exception")
    assert (no_bucket.status, no_bucket.description["error"]) == ("FAILED", "S3.NoSuchBucketException")


def callback_machine(env: Env, queue_url: str) -> str:
    return create_machine(
        env,
        {
            "StartAt": "Wait for the callback",
            "States": {
                "Wait for the callback": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                    "Parameters": {"QueueUrl": queue_url, "MessageBody": {"token.$": "$$.Task.Token"}},
                    "HeartbeatSecondsPath": "$.heartbeat",
                    "TimeoutSecondsPath": "$.timeout",
                    "End": True,
                }
            },
        },
    )


def start_and_take_token(env: Env, machine: str, queue_url: str, payload: dict[str, Any]) -> tuple[str, str]:
    arn = env.client("stepfunctions").start_execution(stateMachineArn=machine, input=json.dumps(payload))[
        "executionArn"
    ]
    messages = env.client("sqs").receive_message(QueueUrl=queue_url, WaitTimeSeconds=5).get("Messages", [])
    assert messages, "the callback task sent no message"
    return arn, json.loads(messages[0]["Body"])["token"]


@pytest.fixture
def callback_queue(env: Env) -> str:
    return str(env.client("sqs").create_queue(QueueName=f"shim-callback-{uuid.uuid4().hex[:8]}")["QueueUrl"])


def test_heartbeats_keep_a_callback_task_alive_past_its_heartbeat_interval(
    env: Env, callback_queue: str
) -> None:
    machine = callback_machine(env, callback_queue)
    arn, token = start_and_take_token(env, machine, callback_queue, {"heartbeat": 3, "timeout": 30})
    sfn = env.client("stepfunctions")

    # 4.5 s of work, past the 3 s interval, heartbeating every 0.5 s: a beat may come 2.5 s late on a
    # busy machine before the task would time out.
    for _ in range(9):
        time.sleep(0.5)
        sfn.send_task_heartbeat(taskToken=token)
    sfn.send_task_success(taskToken=token, output=json.dumps({"done": True}))
    execution = env.stack.wait(arn)

    assert (execution.status, execution.output) == ("SUCCEEDED", {"done": True})


def test_a_missed_heartbeat_fails_the_task_with_heartbeat_timeout(env: Env, callback_queue: str) -> None:
    machine = callback_machine(env, callback_queue)
    arn, token = start_and_take_token(env, machine, callback_queue, {"heartbeat": 1, "timeout": 30})

    execution = env.stack.wait(arn, timeout=10)

    assert (execution.status, execution.description["error"]) == ("FAILED", "States.HeartbeatTimeout")
    with pytest.raises(env.client("stepfunctions").exceptions.ClientError):
        env.client("stepfunctions").send_task_success(taskToken=token, output="{}")


def test_timeout_seconds_path_bounds_the_task_even_with_heartbeats(env: Env, callback_queue: str) -> None:
    machine = callback_machine(env, callback_queue)
    arn, token = start_and_take_token(env, machine, callback_queue, {"heartbeat": 5, "timeout": 1})
    stop = threading.Event()

    def heartbeat() -> None:
        sfn = env.client("stepfunctions")
        while not stop.wait(0.3):
            try:
                sfn.send_task_heartbeat(taskToken=token)
            except sfn.exceptions.ClientError:
                return

    beating = threading.Thread(target=heartbeat)
    beating.start()
    try:
        execution = env.stack.wait(arn, timeout=10)
    finally:
        stop.set()
        beating.join(timeout=5)

    assert (execution.status, execution.description["error"]) == ("FAILED", "States.Timeout")


def test_a_non_integer_timeout_path_fails_the_execution(env: Env, callback_queue: str) -> None:
    machine = callback_machine(env, callback_queue)

    execution = run(env, machine, {"heartbeat": "soon", "timeout": 30})

    assert (execution.status, execution.description["error"]) == ("FAILED", "States.Runtime")


def test_mock_attempts_count_each_retry(env: Env) -> None:
    machine = create_machine(
        env,
        {
            "StartAt": "Put a marker",
            "States": {
                "Put a marker": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::dynamodb:putItem",
                    "Parameters": {
                        "TableName": env.stack.jobs_table,
                        "Item": {"job_id": {"S": "never-written"}},
                    },
                    "Retry": [
                        {
                            "ErrorEquals": ["DynamoDB.ProvisionedThroughputExceededException"],
                            "MaxAttempts": 3,
                            "BackoffRate": 2,
                        }
                    ],
                    "End": True,
                }
            },
        },
        name=SHIM_CHECK,
    )
    arn = env.client("stepfunctions").start_execution(stateMachineArn=f"{machine}#Attempts", input="{}")[
        "executionArn"
    ]

    execution = env.stack.wait(arn)

    assert (execution.status, execution.output) == ("SUCCEEDED", {"mocked": "third attempt"})
    assert [f["error"] for f in execution.failures("Put a marker")] == [
        "DynamoDB.ProvisionedThroughputExceededException"
    ] * 2
    assert env.job("never-written") == {}  # the mocked attempt made no real call


def test_start_execution_error_names_are_those_of_aws() -> None:
    assert optimized_start_execution_error("ExecutionAlreadyExists") == (
        "StepFunctions.ExecutionAlreadyExistsException"
    )
    assert optimized_start_execution_error("ValidationException") == "StepFunctions.ValidationException"
    assert optimized_start_execution_error("States.Runtime") == "States.Runtime"


def test_a_taken_execution_name_is_refused_with_the_aws_error_name(env: Env) -> None:
    target = create_machine(env, {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
    start = {
        "Type": "Task",
        "Resource": "arn:aws:states:::states:startExecution",
        "Parameters": {"StateMachineArn": target, "Name.$": "$.name", "Input": {"from.$": "$$.State.Name"}},
        "ResultPath": None,
    }
    machine = create_machine(
        env,
        {
            "StartAt": "Start it",
            "States": {
                "Start it": {**start, "Next": "Start it again"},
                "Start it again": {
                    **start,
                    "Catch": [
                        {
                            "ErrorEquals": ["StepFunctions.ExecutionAlreadyExistsException"],
                            "ResultPath": "$.refused",
                            "Next": "Refused",
                        }
                    ],
                    "End": True,
                },
                "Refused": {"Type": "Succeed"},
            },
        },
    )
    name = f"taken-{uuid.uuid4().hex[:8]}"

    execution = run(env, machine, {"name": name})

    assert execution.path == ["Start it", "Start it again", "Refused"]
    assert execution.output["refused"]["Error"] == "StepFunctions.ExecutionAlreadyExistsException"
    started = env.client("stepfunctions").list_executions(stateMachineArn=target)["executions"]
    assert [e["name"] for e in started] == [name]
