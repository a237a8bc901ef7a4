"""Orchestration: the bus, its rules and archive, the three state machines, the stream consumers
(queue promoter and cost rollup) and the work queue.

The state machines are the files in statemachines/ (``DefinitionBody.from_file``); their
``${Placeholders}`` are documented in statemachines/README.md and filled here through
``definition_substitutions``. Their roles get exactly the actions their tasks call, on the resources
they name (tests/infra checks the two agree).
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from functions.common.sizes import DEFAULT_TASK_SIZE, TaskSize
from stacks.bundling import ROOT
from stacks.config import Config
from stacks.lambdas import LOG_RETENTION, PythonFunction
from stacks.storage import Storage

STATEMACHINES = ROOT / "statemachines"
JOBS_SOURCE = "plot-palette.jobs"
EVENT_SOURCES = ["plot-palette.jobs", "plot-palette.templates", "plot-palette.seed-data"]
# Rounds (a page listed and deleted) one cleanup execution does before it continues in a new one:
# about 2,800 history events, far below the 25,000 limit (statemachines/README.md).
CLEANUP_ROUNDS_PER_EXECUTION = 200


def _queue(scope: Construct, cid: str, name: str, config: Config, **kwargs: object) -> sqs.Queue:
    return sqs.Queue(
        scope,
        cid,
        queue_name=name,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        # Messages are transient; a retained queue with a fixed name would block a redeploy.
        removal_policy=RemovalPolicy.DESTROY,
        **kwargs,  # type: ignore[arg-type]
    )


class Orchestration(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        storage: Storage,
        code: lambda_.Code,
        layers: list[lambda_.ILayerVersion],
    ) -> None:
        super().__init__(scope, construct_id)
        names = config.names
        self._config = config

        # Events ---------------------------------------------------------------------------------
        self.bus = events.EventBus(self, "Bus", event_bus_name=names.event_bus)
        if not config.is_local:  # MiniStack's CloudFormation has no AWS::Events::Archive
            self.archive: events.Archive | None = events.Archive(
                self,
                "Archive",
                archive_name=names.event_archive,
                source_event_bus=self.bus,
                event_pattern=events.EventPattern(source=EVENT_SOURCES),
                retention=Duration.days(90),
                description="Every plot-palette domain event, for replay",
            )
        else:
            self.archive = None

        # Work queue -----------------------------------------------------------------------------
        self.work_dlq = _queue(self, "WorkDlq", names.work_dlq, config, retention_period=Duration.days(14))
        self.work_queue = self._work_queue("WorkQueue", names.work_queue)
        # One queue per task size, each scaling its own worker service (stacks/worker.py); the
        # default size keeps the plain queue. Locally one pool of worker processes serves every size.
        self.work_queues: dict[TaskSize, sqs.Queue] = {
            size: (
                self.work_queue
                if size is DEFAULT_TASK_SIZE or config.is_local
                else self._work_queue(
                    f"WorkQueue{size.value.capitalize()}", f"{names.work_queue}-{size.value}"
                )
            )
            for size in TaskSize
        }

        # State machines ---------------------------------------------------------------------------
        common = {
            "JobsTable": storage.jobs.table_name,
            "QueueTable": storage.queue.table_name,
            "EventBusName": self.bus.event_bus_name,
        }
        self.lifecycle = self._state_machine(
            "JobLifecycle",
            "job_lifecycle",
            names.lifecycle_state_machine,
            config,
            {
                **common,
                **{
                    f"WorkQueueUrl{size.value.capitalize()}": queue.queue_url
                    for size, queue in self.work_queues.items()
                },
                "HeartbeatSeconds": str(config.heartbeat_seconds),
                "JobTimeoutSeconds": str(config.job_timeout_seconds),
                "BatchSize": str(config.batch_size),
                "PartitionRecords": str(config.partition_records),
                "PartitionConcurrency": str(config.partition_concurrency),
            },
        )
        self.cancellation = self._state_machine(
            "JobCancellation", "job_cancellation", names.cancellation_state_machine, config, common
        )
        self.cleanup = self._state_machine(
            "JobCleanup",
            "job_cleanup",
            names.cleanup_state_machine,
            config,
            {
                **common,
                "CostTrackingTable": storage.cost_tracking.table_name,
                "TemplatesTable": storage.templates.table_name,
                "BucketName": storage.bucket.bucket_name,
                "CleanupRoundsPerExecution": str(CLEANUP_ROUNDS_PER_EXECUTION),
            },
        )
        self._grant_state_machines(storage, cleanup_name=names.cleanup_state_machine)

        # Rules: domain events -> state machines ---------------------------------------------------
        self.rule_target_dlq = _queue(
            self, "RuleTargetDlq", names.rule_target_dlq, config, retention_period=Duration.days(14)
        )
        self.rules: dict[str, events.Rule] = {}
        for cid, detail_type, machine in (
            ("CancellationRule", "Job Cancellation Requested", self.cancellation),
            ("DeletionRule", "Job Deletion Requested", self.cleanup),
        ):
            self.rules[detail_type] = events.Rule(
                self,
                cid,
                event_bus=self.bus,
                description=f"{detail_type} -> {machine.node.id}",
                event_pattern=events.EventPattern(source=[JOBS_SOURCE], detail_type=[detail_type]),
                targets=[
                    targets.SfnStateMachine(
                        machine,
                        dead_letter_queue=self.rule_target_dlq,
                        retry_attempts=8,
                        max_event_age=Duration.hours(2),
                    )
                ],
            )

        # Stream consumers -------------------------------------------------------------------------
        # What promoting a job needs; the promoter and the reconciler both promote.
        self.promotion_resources = storage.resources | {
            "MAX_RUNNING_JOBS": str(config.max_running_jobs),
            "MAX_RUNNING_JOBS_PER_USER": str(config.per_user_running_cap),
            "LIFECYCLE_STATE_MACHINE_ARN": self.lifecycle.state_machine_arn,
        }
        self.promoter = PythonFunction(
            self,
            "Promoter",
            config=config,
            domain="promoter",
            code=code,
            layers=layers,
            description="plot-palette queue promoter (Jobs stream)",
            timeout_seconds=60,
            resources=self.promotion_resources,
        )
        self.rollup = PythonFunction(
            self,
            "Rollup",
            config=config,
            domain="rollup",
            code=code,
            layers=layers,
            description="plot-palette cost rollup (CostTracking stream)",
            timeout_seconds=60,
            resources=storage.resources,
        )
        self.stream_failures: dict[str, sqs.Queue] = {}
        for consumer, fn, table, retries in (
            ("promoter", self.promoter, storage.jobs, 5),
            ("rollup", self.rollup, storage.cost_tracking, 10),
        ):
            failures = _queue(
                self,
                f"{consumer.title()}Failures",
                names.stream_failures_queue(consumer),
                config,
                retention_period=Duration.days(14),
            )
            self.stream_failures[consumer] = failures
            fn.function.add_event_source(
                sources.DynamoEventSource(
                    table,
                    starting_position=lambda_.StartingPosition.TRIM_HORIZON,
                    batch_size=25,
                    max_batching_window=Duration.seconds(1),
                    bisect_batch_on_error=True,
                    report_batch_item_failures=True,
                    retry_attempts=retries,
                    max_record_age=Duration.hours(6),
                    parallelization_factor=1,
                    on_failure=sources.SqsDlq(failures),
                )
            )

        # promoter: claim slots (Queue), check the job (Jobs), start the lifecycle execution.
        storage.queue.grant_read_write_data(self.promoter.function)
        storage.jobs.grant_read_data(self.promoter.function)
        self.lifecycle.grant_start_execution(self.promoter.function)
        # Before freeing the slot of a finished or deleted job, the promoter checks its execution ended.
        self.lifecycle.grant_execution(self.promoter.function, "states:DescribeExecution")
        # rollup: mark the delta rolled up (CostTracking) and ADD it to the job (Jobs).
        storage.cost_tracking.grant_read_write_data(self.rollup.function)
        storage.jobs.grant_read_write_data(self.rollup.function)

    def _state_machine(
        self, cid: str, file: str, name: str, config: Config, substitutions: dict[str, str]
    ) -> sfn.StateMachine:
        log_group = logs.LogGroup(
            self,
            f"{cid}Logs",
            log_group_name=f"/aws/vendedlogs/states/{name}",
            retention=LOG_RETENTION,
            removal_policy=RemovalPolicy.DESTROY if config.is_local else RemovalPolicy.RETAIN,
        )
        return sfn.StateMachine(
            self,
            cid,
            state_machine_name=name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_file(str(STATEMACHINES / f"{file}.asl.json")),
            definition_substitutions=substitutions,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            tracing_enabled=not config.is_local,
        )

    def _work_queue(self, cid: str, name: str) -> sqs.Queue:
        return _queue(
            self,
            cid,
            name,
            self._config,
            visibility_timeout=Duration.minutes(15),
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.work_dlq, max_receive_count=5),
        )

    def _grant_state_machines(self, storage: Storage, *, cleanup_name: str) -> None:
        """Exactly the calls each ASL file makes (see the Task states of statemachines/*.asl.json)."""
        lifecycle, cancellation, cleanup = self.lifecycle, self.cancellation, self.cleanup
        items = storage.grant_items
        # GetItem: each partition reads the job's cancel/budget flags before it is sent.
        items(storage.jobs, lifecycle, "dynamodb:UpdateItem", "dynamodb:GetItem")
        items(storage.queue, lifecycle, "dynamodb:UpdateItem")
        for queue in {id(q): q for q in self.work_queues.values()}.values():
            queue.grant_send_messages(lifecycle)

        items(storage.jobs, cancellation, "dynamodb:GetItem", "dynamodb:UpdateItem")
        items(storage.queue, cancellation, "dynamodb:DeleteItem")
        lifecycle.grant(cancellation, "states:SendTaskFailure")

        items(storage.jobs, cleanup, "dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem")
        items(storage.queue, cleanup, "dynamodb:UpdateItem", "dynamodb:DeleteItem")
        items(storage.cost_tracking, cleanup, "dynamodb:Query", "dynamodb:BatchWriteItem")
        # The job delete is a TransactWriteItems whose Update subtracts 1 from the template head's
        # job_refs; a transaction is authorized per item action (DeleteItem on Jobs, above).
        items(storage.templates, cleanup, "dynamodb:UpdateItem")
        storage.grant_list(cleanup, "jobs/")
        storage.grant_objects(cleanup, "jobs/", "s3:DeleteObject")
        # A long cleanup continues in a new execution of itself. Its ARN is built from the fixed name:
        # a reference to the machine in its own role's policy would be a circular dependency.
        cleanup_arn = Stack.of(self).format_arn(
            service="states",
            resource="stateMachine",
            resource_name=cleanup_name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        cleanup.add_to_role_policy(
            iam.PolicyStatement(actions=["states:StartExecution"], resources=[cleanup_arn])
        )

        for machine in (lifecycle, cancellation, cleanup):
            self.bus.grant_put_events_to(machine)
