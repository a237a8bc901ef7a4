"""Step Functions task reporting through botocore's Stubber."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from functions.worker.reporter import StepFunctionsTaskReporter, TaskGone

pytestmark = pytest.mark.unit


@pytest.fixture
def sfn():
    client = boto3.client("stepfunctions", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_success_sends_the_output_as_json(sfn):
    client, stubber = sfn
    output = {"records_generated": 3, "output_key": "jobs/j/exports/dataset.csv"}
    stubber.add_response("send_task_success", {}, {"taskToken": "t", "output": json.dumps(output)})
    StepFunctionsTaskReporter(client).success("t", output)


def test_failure_is_cut_to_the_api_limits(sfn):
    client, stubber = sfn
    stubber.add_response(
        "send_task_failure", {}, {"taskToken": "t", "error": "JobCancelled", "cause": "c" * 32768}
    )
    StepFunctionsTaskReporter(client).failure("t", "JobCancelled", "c" * 40000)


@pytest.mark.parametrize("code", ["TaskTimedOut", "TaskDoesNotExist", "InvalidToken"])
def test_a_token_nobody_waits_for_is_task_gone(sfn, code):
    client, stubber = sfn
    stubber.add_client_error("send_task_heartbeat", code, "gone", 400)
    with pytest.raises(TaskGone, match=code):
        StepFunctionsTaskReporter(client).heartbeat("t")
