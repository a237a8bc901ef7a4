"""Orchestration: state machines from statemachines/*.asl.json with every placeholder substituted,
their IAM covering exactly the tasks they run, rules and targets, stream consumers, work queue."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.common.sizes import DEFAULT_TASK_SIZE, TaskSize
from stacks.bundling import ROOT
from stacks.names import Stage
from tests.infra.conftest import PLACEHOLDER, Synthesized, get_att, ref

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

MACHINES = {
    "lifecycle_state_machine": "job_lifecycle",
    "cancellation_state_machine": "job_cancellation",
    "cleanup_state_machine": "job_cleanup",
}


def _machine(each: Synthesized, attr: str) -> tuple[str, dict[str, Any]]:
    return each.one("AWS::StepFunctions::StateMachine", StateMachineName=getattr(each.names, attr))


def _definition_text(each: Synthesized, machine: dict[str, Any]) -> str:
    key = machine["Properties"]["DefinitionS3Location"]["Key"]
    return each.file_asset(key).read_text()


def _policy_statements(each: Synthesized, role_id: str) -> list[dict[str, Any]]:
    statements = []
    for policy in each.of_type("AWS::IAM::Policy").values():
        if ref(role_id) in policy["Properties"]["Roles"]:
            statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _allows(statements: list[dict[str, Any]], action: str, resource_of: str) -> bool:
    """Some Allow statement grants ``action`` on a resource derived from logical id ``resource_of``."""
    for statement in statements:
        if statement["Effect"] != "Allow" or action not in _as_list(statement["Action"]):
            continue
        if any(resource_of in json.dumps(resource) for resource in _as_list(statement["Resource"])):
            return True
    return False


@pytest.mark.parametrize("attr", list(MACHINES))
def test_definition_is_the_repository_file(each: Synthesized, attr: str) -> None:
    _, machine = _machine(each, attr)
    source = ROOT / "statemachines" / f"{MACHINES[attr]}.asl.json"
    assert _definition_text(each, machine) == source.read_text()


@pytest.mark.parametrize("attr", list(MACHINES))
def test_every_placeholder_is_substituted_and_every_substitution_used(each: Synthesized, attr: str) -> None:
    _, machine = _machine(each, attr)
    placeholders = set(PLACEHOLDER.findall(_definition_text(each, machine)))
    substitutions = set(machine["Properties"]["DefinitionSubstitutions"])
    assert placeholders, "the ASL file names its resources through placeholders"
    assert placeholders == substitutions


def test_placeholders_are_documented_in_the_statemachines_readme() -> None:
    readme = ROOT / "statemachines" / "README.md"
    if not readme.exists():
        pytest.fail("statemachines/README.md documents the placeholders; it is missing")
    text = readme.read_text()
    for name in MACHINES.values():
        for placeholder in PLACEHOLDER.findall((ROOT / "statemachines" / f"{name}.asl.json").read_text()):
            assert placeholder in text, f"{placeholder} of {name} is not documented"


def test_substitutions_point_at_the_stack_resources(each: Synthesized) -> None:
    names = each.names
    expected = {
        "JobsTable": ref(each.logical_id("AWS::DynamoDB::Table", TableName=names.jobs_table)),
        "QueueTable": ref(each.logical_id("AWS::DynamoDB::Table", TableName=names.queue_table)),
        "CostTrackingTable": ref(
            each.logical_id("AWS::DynamoDB::Table", TableName=names.cost_tracking_table)
        ),
        "TemplatesTable": ref(each.logical_id("AWS::DynamoDB::Table", TableName=names.templates_table)),
        "EventBusName": ref(each.logical_id("AWS::Events::EventBus", Name=names.event_bus)),
        **{
            # One queue per size in AWS; the local stage's one pool of workers serves every size.
            f"WorkQueueUrl{size.value.capitalize()}": ref(
                each.logical_id(
                    "AWS::SQS::Queue",
                    QueueName=names.work_queue
                    if size is DEFAULT_TASK_SIZE or each.names.stage is Stage.LOCAL
                    else f"{names.work_queue}-{size.value}",
                )
            )
            for size in TaskSize
        },
        "BucketName": ref(
            next(lid for lid in each.of_type("AWS::S3::Bucket") if lid.startswith("StorageData"))
        ),
    }
    for attr in MACHINES:
        _, machine = _machine(each, attr)
        for key, value in machine["Properties"]["DefinitionSubstitutions"].items():
            if key in expected:
                assert value == expected[key], (attr, key)
            else:  # numbers (seconds, sizes) the ASL parses with States.StringToJson
                assert isinstance(value, str), (attr, key)
                assert value.isdigit(), (attr, key, value)
                assert int(value) > 0, (attr, key, value)


# Step Functions integration resource -> the IAM action it calls.
INTEGRATION_ACTIONS = {
    "arn:aws:states:::dynamodb:getItem": "dynamodb:GetItem",
    "arn:aws:states:::dynamodb:putItem": "dynamodb:PutItem",
    "arn:aws:states:::dynamodb:updateItem": "dynamodb:UpdateItem",
    "arn:aws:states:::dynamodb:deleteItem": "dynamodb:DeleteItem",
    "arn:aws:states:::aws-sdk:dynamodb:query": "dynamodb:Query",
    "arn:aws:states:::aws-sdk:dynamodb:batchWriteItem": "dynamodb:BatchWriteItem",
    "arn:aws:states:::aws-sdk:s3:listObjectsV2": "s3:ListBucket",
    "arn:aws:states:::aws-sdk:s3:deleteObjects": "s3:DeleteObject",
    "arn:aws:states:::events:putEvents": "events:PutEvents",
    "arn:aws:states:::sqs:sendMessage": "sqs:SendMessage",
    "arn:aws:states:::sqs:sendMessage.waitForTaskToken": "sqs:SendMessage",
    "arn:aws:states:::aws-sdk:sfn:sendTaskFailure": "states:SendTaskFailure",
    "arn:aws:states:::states:startExecution": "states:StartExecution",
    # Authorized per item action instead: see TRANSACT_ITEM_ACTIONS.
    "arn:aws:states:::aws-sdk:dynamodb:transactWriteItems": "dynamodb:TransactWriteItems",
}
# TransactWriteItems has no IAM action of its own: each item's action is checked on its table.
TRANSACT_ITEM_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}


def _tasks(states: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for state in states.values():
        if state.get("Type") == "Task":
            found.append(state)
        for branch in state.get("Branches", []):
            found.extend(_tasks(branch["States"]))
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                found.extend(_tasks(state[key]["States"]))
    return found


@pytest.mark.parametrize("attr", list(MACHINES))
def test_role_grants_every_task_its_action_on_the_resource_it_names(each: Synthesized, attr: str) -> None:
    _, machine = _machine(each, attr)
    role_id = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    statements = _policy_statements(each, role_id)
    substitutions = machine["Properties"]["DefinitionSubstitutions"]
    definition = json.loads(_definition_text(each, machine))
    tasks = _tasks(definition["States"])
    assert tasks
    for task in tasks:
        resource = task["Resource"]
        assert resource in INTEGRATION_ACTIONS, (
            f"unknown integration {resource}: extend the grants and this map"
        )
        action = INTEGRATION_ACTIONS[resource]
        if action == "dynamodb:TransactWriteItems":
            transact_items = (task.get("Parameters") or task.get("Arguments") or {})["TransactItems"]
            assert transact_items
            for transact_item in transact_items:
                ((kind, operation),) = transact_item.items()
                (placeholder,) = PLACEHOLDER.findall(operation["TableName"])
                logical_id = substitutions[placeholder]["Ref"]
                item_action = TRANSACT_ITEM_ACTIONS[kind]
                assert _allows(statements, item_action, logical_id), (
                    f"{attr}: {item_action} on {logical_id} not granted"
                )
            continue
        arguments = json.dumps(task.get("Parameters") or task.get("Arguments") or {})
        named = {p for p in PLACEHOLDER.findall(arguments) if isinstance(substitutions.get(p), dict)}
        if action == "states:SendTaskFailure":
            named_ids = [_machine(each, "lifecycle_state_machine")[0]]
        elif action == "states:StartExecution":
            # The cleanup continues in a new execution of itself ($$.StateMachine.Id).
            assert task["Parameters"]["StateMachineArn.$"] == "$$.StateMachine.Id"
            own_arn = _own_arn(machine["Properties"]["StateMachineName"])
            assert any(
                own_arn in _as_list(s["Resource"])
                for s in statements
                if s["Effect"] == "Allow" and action in _as_list(s["Action"])
            ), f"{attr}: {action} on itself not granted"
            continue
        else:
            if not named and action == "sqs:SendMessage":
                # The lifecycle picks the queue of the job's task size from the settings its first
                # state reads from ${WorkQueueUrl<Size>}: it may send to each of them.
                named = {p for p in substitutions if p.startswith("WorkQueueUrl")}
            assert named, f"{task} names no resource through a placeholder"
            named_ids = sorted({substitutions[p]["Ref"] for p in named})
        for logical_id in named_ids:
            assert _allows(statements, action, logical_id), f"{attr}: {action} on {logical_id} not granted"


def _own_arn(name: str) -> dict[str, Any]:
    """A state machine's ARN built from the stack's partition, region and account and its fixed name
    (a Ref to the machine from its own role's policy would be a circular dependency)."""
    return {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":states:",
                {"Ref": "AWS::Region"},
                ":",
                {"Ref": "AWS::AccountId"},
                f":stateMachine:{name}",
            ],
        ]
    }


def test_only_the_cleanup_may_start_executions_and_only_of_itself(each: Synthesized) -> None:
    for attr in MACHINES:
        _, machine = _machine(each, attr)
        role_id = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
        starts = [
            resource
            for s in _policy_statements(each, role_id)
            if "states:StartExecution" in _as_list(s["Action"])
            for resource in _as_list(s["Resource"])
        ]
        expected = [_own_arn(each.names.cleanup_state_machine)] if attr == "cleanup_state_machine" else []
        assert starts == expected, attr


def test_cleanup_rounds_per_execution_stays_far_below_the_history_limit(each: Synthesized) -> None:
    _, machine = _machine(each, "cleanup_state_machine")
    rounds = int(machine["Properties"]["DefinitionSubstitutions"]["CleanupRoundsPerExecution"])
    # A round is at most ~14 history events, ~44 with every retry used; the limit is 25,000.
    assert rounds >= 1
    assert rounds * 44 < 25_000


def test_lifecycle_may_not_delete_or_scan(each: Synthesized) -> None:
    """Least privilege, checked from the other side: the lifecycle only updates and reads items."""
    _machine_id, machine = _machine(each, "lifecycle_state_machine")
    role_id = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    actions = {a for s in _policy_statements(each, role_id) for a in _as_list(s["Action"])}
    dynamodb = {a for a in actions if a.startswith("dynamodb:")}
    assert dynamodb == {"dynamodb:UpdateItem", "dynamodb:GetItem"}


@pytest.mark.parametrize(
    ("detail_type", "attr"),
    [
        ("Job Cancellation Requested", "cancellation_state_machine"),
        ("Job Deletion Requested", "cleanup_state_machine"),
    ],
)
def test_rules_route_requests_to_their_state_machine(each: Synthesized, detail_type: str, attr: str) -> None:
    bus_id = each.logical_id("AWS::Events::EventBus", Name=each.names.event_bus)
    machine_id, _ = _machine(each, attr)
    rules = [
        r["Properties"]
        for r in each.of_type("AWS::Events::Rule").values()
        if r["Properties"].get("EventPattern", {}).get("detail-type") == [detail_type]
    ]
    assert len(rules) == 1
    rule = rules[0]
    assert rule["EventBusName"] == ref(bus_id)
    assert rule["EventPattern"]["source"] == ["plot-palette.jobs"]
    (target,) = rule["Targets"]
    assert target["Arn"] == ref(machine_id)
    assert "Input" not in target
    assert "InputPath" not in target
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    assert "Arn" in target["DeadLetterConfig"]


def test_archive_keeps_domain_events_for_replay(prod: Synthesized, local: Synthesized) -> None:
    bus_id = prod.logical_id("AWS::Events::EventBus", Name=prod.names.event_bus)
    _, archive = prod.one("AWS::Events::Archive")
    assert archive["Properties"]["SourceArn"] == get_att(bus_id, "Arn")
    assert archive["Properties"]["RetentionDays"] == 90
    assert not local.of_type("AWS::Events::Archive")  # MiniStack's CloudFormation has no such type


@pytest.mark.parametrize(
    ("domain", "table_attr"), [("promoter", "jobs_table"), ("rollup", "cost_tracking_table")]
)
def test_stream_consumers_report_partial_failures_and_give_up_into_a_queue(
    each: Synthesized, domain: str, table_attr: str
) -> None:
    function_id, _ = each.one("AWS::Lambda::Function", Handler=f"functions.{domain}.handler.lambda_handler")
    table_id = each.logical_id("AWS::DynamoDB::Table", TableName=getattr(each.names, table_attr))
    failures_id = each.logical_id("AWS::SQS::Queue", QueueName=each.names.stream_failures_queue(domain))
    _, mapping = each.one("AWS::Lambda::EventSourceMapping", FunctionName=ref(function_id))
    props = mapping["Properties"]
    assert props["EventSourceArn"] == get_att(table_id, "StreamArn")
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BisectBatchOnFunctionError"] is True
    assert 0 < props["MaximumRetryAttempts"] <= 10
    assert props["MaximumRecordAgeInSeconds"] > 0
    assert props["DestinationConfig"]["OnFailure"]["Destination"] == get_att(failures_id, "Arn")
    assert props["StartingPosition"] == "TRIM_HORIZON"


def test_promoter_knows_the_limit_and_the_lifecycle(each: Synthesized) -> None:
    _, function = each.one("AWS::Lambda::Function", Handler="functions.promoter.handler.lambda_handler")
    variables = function["Properties"]["Environment"]["Variables"]
    lifecycle_id, _ = _machine(each, "lifecycle_state_machine")
    assert variables["MAX_RUNNING_JOBS"] == "5"
    assert variables["LIFECYCLE_STATE_MACHINE_ARN"] == ref(lifecycle_id)
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = _policy_statements(each, role_id)
    assert _allows(statements, "states:StartExecution", lifecycle_id)
    # It frees the slot of a finished job only once that job's execution is over.
    assert _allows(statements, "states:DescribeExecution", lifecycle_id)


def test_work_queue_has_a_dead_letter_queue(each: Synthesized) -> None:
    _, queue = each.one("AWS::SQS::Queue", QueueName=each.names.work_queue)
    dlq_id = each.logical_id("AWS::SQS::Queue", QueueName=each.names.work_dlq)
    redrive = queue["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == get_att(dlq_id, "Arn")
    assert 0 < redrive["maxReceiveCount"] <= 10


def test_queues_are_encrypted(each: Synthesized) -> None:
    for lid, queue in each.of_type("AWS::SQS::Queue").items():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True, lid


def test_state_machines_log_everything(each: Synthesized) -> None:
    for attr in MACHINES:
        _, machine = _machine(each, attr)
        logging = machine["Properties"]["LoggingConfiguration"]
        assert logging["Level"] == "ALL"
        assert machine["Properties"]["TracingConfiguration"]["Enabled"] is (each.stage is Stage.PROD)
