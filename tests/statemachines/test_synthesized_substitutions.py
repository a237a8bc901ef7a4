"""The state machines run with the synthesized template's substitutions, resolved to the emulator's
resources: every reference must land on a resource the fixture created."""

from __future__ import annotations

from typing import Any

import pytest

from tests.statemachines.conftest import TEST_CONTEXT
from tests.support.ministack import StateMachineStack
from tests.support.synthesized import Resolver

pytestmark = pytest.mark.statemachines

RESOURCES: dict[str, dict[str, Any]] = {
    "Jobs": {"Type": "AWS::DynamoDB::Table", "Properties": {"TableName": "p-Jobs"}},
    "Data": {
        "Type": "AWS::S3::Bucket",
        "Properties": {
            "BucketName": {"Fn::Join": ["-", ["p-data", {"Ref": "AWS::AccountId"}, {"Ref": "AWS::Region"}]]}
        },
    },
    "Work": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "p-work"}},
    "Bus": {"Type": "AWS::Events::EventBus", "Properties": {"Name": "p"}},
    "Cleanup": {"Type": "AWS::StepFunctions::StateMachine", "Properties": {"StateMachineName": "p-cleanup"}},
    "Role": {"Type": "AWS::IAM::Role", "Properties": {}},
}


def _resolver() -> Resolver:
    return Resolver(RESOURCES, account="123", region="eu-west-1", queue_url=lambda name: f"https://q/{name}")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("300", "300"),
        ({"Ref": "Jobs"}, "p-Jobs"),
        ({"Ref": "Data"}, "p-data-123-eu-west-1"),
        ({"Ref": "Work"}, "https://q/p-work"),
        ({"Ref": "Bus"}, "p"),
        ({"Ref": "Cleanup"}, "arn:aws:states:eu-west-1:123:stateMachine:p-cleanup"),
        ({"Fn::GetAtt": ["Jobs", "Arn"]}, "arn:aws:dynamodb:eu-west-1:123:table/p-Jobs"),
        ({"Fn::GetAtt": ["Work", "Arn"]}, "arn:aws:sqs:eu-west-1:123:p-work"),
        ({"Fn::GetAtt": ["Bus", "Arn"]}, "arn:aws:events:eu-west-1:123:event-bus/p"),
        ({"Fn::GetAtt": ["Data", "Arn"]}, "arn:aws:s3:::p-data-123-eu-west-1"),
        ({"Fn::GetAtt": ["Cleanup", "Name"]}, "p-cleanup"),
    ],
)
def test_template_values_resolve_as_cloudformation_would(value: Any, expected: str) -> None:
    assert _resolver().resolve(value) == expected


@pytest.mark.parametrize(
    "value",
    [{"Ref": "Role"}, {"Fn::GetAtt": ["Jobs", "StreamArn"]}, {"Fn::Sub": "x"}, {"Ref": "Missing"}],
    ids=["resource-not-created", "attribute", "intrinsic", "unknown-logical-id"],
)
def test_what_the_fixture_cannot_provide_fails_loudly(value: Any) -> None:
    with pytest.raises((ValueError, KeyError)):
        _resolver().resolve(value)


def test_the_context_reaches_the_substitutions(stack: StateMachineStack) -> None:
    lifecycle = stack.substitutions("job_lifecycle")
    assert lifecycle["HeartbeatSeconds"] == TEST_CONTEXT["heartbeat_seconds"]
    assert lifecycle["JobTimeoutSeconds"] == TEST_CONTEXT["job_timeout_seconds"]
    assert lifecycle["BatchSize"] == TEST_CONTEXT["batch_size"]
    assert stack.substitutions("job_cleanup")["CleanupRoundsPerExecution"] == "200"  # no context: as deployed


def test_every_resolved_reference_is_a_resource_of_the_emulator(stack: StateMachineStack) -> None:
    tables = set(stack.client("dynamodb").list_tables()["TableNames"])
    buckets = {b["Name"] for b in stack.client("s3").list_buckets()["Buckets"]}
    buses = {b["Name"] for b in stack.client("events").list_event_buses()["EventBuses"]}
    queues = set(stack.client("sqs").list_queues()["QueueUrls"])
    for stem, machine in stack.synthesized.machines.items():
        resolved = stack.substitutions(stem)
        for key, raw in machine.substitutions.items():
            if isinstance(raw, str):
                continue
            kind = stack.synthesized.resources[raw["Ref"]]["Type"]
            existing = {
                "AWS::DynamoDB::Table": tables,
                "AWS::S3::Bucket": buckets,
                "AWS::Events::EventBus": buses,
                "AWS::SQS::Queue": queues,
            }[kind]
            assert resolved[key] in existing, (stem, key, resolved[key])


def test_the_helpers_read_and_seed_what_the_machines_use(stack: StateMachineStack) -> None:
    cleanup = stack.substitutions("job_cleanup")
    assert (cleanup["JobsTable"], cleanup["QueueTable"]) == (stack.jobs_table, stack.queue_table)
    assert (cleanup["CostTrackingTable"], cleanup["TemplatesTable"]) == (
        stack.cost_tracking_table,
        stack.templates_table,
    )
    assert cleanup["BucketName"] == stack.bucket
    # Work items of the default task size (medium) go to the queue the tests read.
    assert stack.substitutions("job_lifecycle")["WorkQueueUrlMedium"] == stack.work_queue_url
