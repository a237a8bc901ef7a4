"""cdk-nag (AwsSolutions) findings this app accepts, each with the reason it is accepted.

Suppressions are attached to the exact resource and, for IAM5, to the exact wildcard finding
(``applies_to``), so a new wildcard anywhere still fails the check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import IConstruct

if TYPE_CHECKING:
    from aws_cdk import aws_ecs as ecs

    from stacks.plot_palette_stack import PlotPaletteStack
    from stacks.worker import Worker

INDEXES = {"regex": "/^Resource::<Storage[A-Za-z]+[0-9A-F]{8}\\.Arn>\\/index\\/\\*$/g"}
OBJECTS = {"regex": "/^Resource::<StorageData[0-9A-F]{8}\\.Arn>\\/(jobs|seed-data)\\/\\*$/g"}

XRAY = (
    "xray:PutTraceSegments and xray:PutTelemetryRecords (active tracing) support no resource-level "
    "permissions; AWS documents Resource '*' for them."
)
INDEX_REASON = (
    "index/* of a table this role already reads: the table's own GSIs of docs/data-model.md, "
    "nothing outside the table (added by the grant_read*_data helpers)."
)
OBJECT_REASON = (
    "Object keys under one prefix of the data bucket (seed-data/ or jobs/, docs/data-model.md S3 layout): "
    "the keys are per user and per job, so the prefix is the narrowest static resource."
)


def _suppress(construct: IConstruct, rule: str, reason: str, applies_to: list[object] | None = None) -> None:
    NagSuppressions.add_resource_suppressions(
        construct,
        [NagPackSuppression(id=rule, reason=reason, applies_to=applies_to)],  # type: ignore[arg-type]
        apply_to_children=True,
    )


BEDROCK_RESOURCES: list[object] = [
    {"regex": "/^Resource::arn:<AWS::Partition>:bedrock:\\*::foundation-model\\/\\*$/g"},
    {
        "regex": "/^Resource::arn:<AWS::Partition>:bedrock:<AWS::Region>:<AWS::AccountId>:"
        "inference-profile\\/\\*$/g"
    },
]


def _suppress_task_definition(task_definition: ecs.FargateTaskDefinition) -> None:
    """The findings every task size's definition shares."""
    _suppress(
        task_definition,
        "AwsSolutions-ECS2",
        "The environment holds resource names and the queue URL only (no secrets); the worker's "
        "settings model reads them like the Lambdas do.",
    )
    execution_role = task_definition.execution_role
    assert execution_role is not None
    _suppress(
        execution_role,
        "AwsSolutions-IAM5",
        "ecr:GetAuthorizationToken supports no resource-level permissions (image pulls themselves "
        "are limited to the asset repository).",
        ["Resource::*"],
    )


def suppress_accepted_findings(stack: PlotPaletteStack) -> None:
    _functions(stack)
    _state_machines_and_queues(stack)
    _auth_and_routes(stack)
    _storage(stack)
    if stack.worker is not None:
        _worker(stack.worker)


def _functions(stack: PlotPaletteStack) -> None:
    config, orchestration, api = stack.config, stack.orchestration, stack.api
    # Lambda roles: index/* of read tables, object prefixes, X-Ray and stream listing.
    for name, fn in [
        *api.functions.items(),
        ("promoter", orchestration.promoter),
        ("rollup", orchestration.rollup),
    ]:
        reasons = [XRAY] if not config.is_local else []
        if name in ("promoter", "rollup"):
            reasons.append(
                "dynamodb:ListStreams (the event source mapping's stream discovery) supports no "
                "resource-level permissions."
            )
        if reasons:
            _suppress(fn.role, "AwsSolutions-IAM5", " ".join(reasons), ["Resource::*"])
        _suppress(fn.role, "AwsSolutions-IAM5", INDEX_REASON, [INDEXES])
        _suppress(fn.role, "AwsSolutions-IAM5", OBJECT_REASON, [OBJECTS])

    if not config.is_local:
        _suppress(
            api.functions["templates"].role,
            "AwsSolutions-IAM5",
            "The dry run (POST /templates/{id}/test) calls the model each template step names, chosen "
            "at run time, like the worker: any foundation model or this account's inference profiles; "
            "the actions are exactly bedrock:InvokeModel and bedrock:InvokeModelWithResponseStream.",
            BEDROCK_RESOURCES,
        )


def _state_machines_and_queues(stack: PlotPaletteStack) -> None:
    config, orchestration = stack.config, stack.orchestration
    # State machine roles: CloudWatch Logs delivery and X-Ray.
    for machine in (orchestration.lifecycle, orchestration.cancellation, orchestration.cleanup):
        _suppress(
            machine.role,
            "AwsSolutions-IAM5",
            "Step Functions log delivery (logs:CreateLogDelivery, logs:GetLogDelivery, ... "
            "logs:DescribeLogGroups) and X-Ray require Resource '*' (AWS Step Functions logging docs).",
            ["Resource::*"],
        )
        _suppress(machine.role, "AwsSolutions-IAM5", OBJECT_REASON, [OBJECTS])
        if config.is_local:
            _suppress(machine, "AwsSolutions-SF2", "The local stage runs on an emulator without X-Ray.")

    # Queues that are dead-letter destinations themselves (not through a RedrivePolicy).
    for queue in (orchestration.rule_target_dlq, *orchestration.stream_failures.values()):
        _suppress(
            queue,
            "AwsSolutions-SQS3",
            "This queue is itself a dead-letter destination (rule target DLQ or event source mapping "
            "on-failure destination); a DLQ of a DLQ would only move the same records again.",
        )


def _auth_and_routes(stack: PlotPaletteStack) -> None:
    auth, api = stack.auth, stack.api
    if auth.created:
        pool = auth.user_pool.node.default_child
        assert pool is not None
        _suppress(
            pool,
            "AwsSolutions-COG2",
            "MFA is offered (TOTP, optional) but not required: the product lets users choose; "
            "set it to required per deployment if policy demands it.",
        )
        _suppress(
            pool,
            "AwsSolutions-COG8",
            "The Plus feature plan bills per monthly active user; the Essentials plan with a strong "
            "password policy is the default. Turn Plus on per deployment when threat protection is needed.",
        )

    public_routes = {
        "GET--health": "GET /health is the liveness probe, public by design (the API contract); it returns a "
        "constant and reads nothing.",
        "GET--docs": "GET /docs is the API's Swagger UI page: static documentation, no data.",
        "GET--openapi.json": "GET /openapi.json is the API's published OpenAPI document: static, no data.",
    }
    for child, reason in public_routes.items():
        _suppress(api.http_api.node.find_child(child), "AwsSolutions-APIG4", reason)


def _storage(stack: PlotPaletteStack) -> None:
    config, storage = stack.config, stack.storage
    if config.is_local:
        _suppress(
            storage.bucket,
            "AwsSolutions-S1",
            "The local stage runs on an emulator: there is no S3 server access logging to deliver to.",
        )
    elif storage.access_logs is not None:
        _suppress(
            storage.access_logs,
            "AwsSolutions-S1",
            "This is the server access log bucket; logging it into itself would loop.",
        )


def _worker(worker: Worker) -> None:
    for task_definition in worker.task_definitions.values():
        _suppress_task_definition(task_definition)
    _suppress(worker.task_role, "AwsSolutions-IAM5", OBJECT_REASON, [OBJECTS])
    _suppress(
        worker.task_role,
        "AwsSolutions-IAM5",
        "Task scale-in protection for the worker's own task: task IDs are assigned at run time, so "
        "the tasks of the worker cluster (task/<cluster>/*) are the narrowest static resource.",
        [
            {
                "regex": "/^Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:"
                "task\\/<WorkerCluster[0-9A-F]{8}>\\/\\*$/g"
            }
        ],
    )
    _suppress(
        worker.task_role,
        "AwsSolutions-IAM5",
        "A template picks its Bedrock model per step at run time, so the worker may invoke any "
        "foundation model or this account's inference profiles; the actions are exactly "
        "bedrock:InvokeModel and bedrock:InvokeModelWithResponseStream (Converse uses them).",
        BEDROCK_RESOURCES,
    )
