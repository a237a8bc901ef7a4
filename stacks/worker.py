"""Worker: the generation worker as an ECS Fargate Spot service scaled on the work queue's depth.

The image is built from the repository's Dockerfile when deploying (``cdk deploy`` needs Docker;
synth does not). The task role holds what the worker contract (docs/data-model.md "Work item")
needs and nothing more. Not part of the ``local`` stage: there the worker runs as a local process.
"""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_applicationautoscaling as autoscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from functions.common.sizes import DEFAULT_TASK_SIZE, TASK_SHAPES, TaskSize
from stacks.bundling import ROOT
from stacks.config import Config
from stacks.lambdas import LOG_RETENTION
from stacks.storage import Storage

# The Docker build context is the repository minus what an image never needs (and what would make
# the asset hash slow to compute).
IMAGE_EXCLUDES = [
    ".venv",
    ".git",
    "cdk.out",
    ".plot-palette",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    "**/__pycache__",
    "**/*.pyc",
    "*.egg-info",
    "build",
    "dist",
    "node_modules",
    "tests",
    "benchmarks",
]


def worker_resources(storage: Storage, work_queue: sqs.IQueue) -> dict[str, str]:
    """The resources the worker talks to, by the environment variable that names each one.

    The ECS task gets them as its environment; the local stage outputs them (under the same names,
    see ``PlotPaletteStack``) for the local runtime, which runs the worker as a process.
    """
    return {
        "WORK_QUEUE_URL": work_queue.queue_url,
        "JOBS_TABLE": storage.jobs.table_name,
        "TEMPLATES_TABLE": storage.templates.table_name,
        "COST_TRACKING_TABLE": storage.cost_tracking.table_name,
        "BUCKET_NAME": storage.bucket.bucket_name,
    }


def bedrock_invoke_statement() -> iam.PolicyStatement:
    """Invoke any foundation model or this account's inference profiles (templates pick models at
    run time): the worker, and the templates API's dry run."""
    return iam.PolicyStatement(
        actions=["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"],
        resources=[
            f"arn:{Aws.PARTITION}:bedrock:*::foundation-model/*",
            f"arn:{Aws.PARTITION}:bedrock:{Aws.REGION}:{Aws.ACCOUNT_ID}:inference-profile/*",
        ],
    )


class Worker(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        storage: Storage,
        work_queues: dict[TaskSize, sqs.IQueue],
        lifecycle: sfn.IStateMachine,
    ) -> None:
        super().__init__(scope, construct_id)
        names = config.names

        # Public subnets only, no NAT gateway: nothing costs money while no task runs. Tasks get a
        # public IP for egress (AWS APIs, Bedrock) and accept no inbound traffic.
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24)
            ],
        )
        flow_logs = logs.LogGroup(
            self,
            "FlowLogs",
            log_group_name=names.log_group("vpc", "flow-logs"),
            retention=LOG_RETENTION,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.vpc.add_flow_log("FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs))
        self.security_group = ec2.SecurityGroup(
            self,
            "TaskSecurityGroup",
            vpc=self.vpc,
            description="plot-palette worker tasks: egress only",
            allow_all_outbound=True,
        )

        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            cluster_name=names.cluster,
            vpc=self.vpc,
            enable_fargate_capacity_providers=True,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )

        self.task_role = iam.Role(
            self,
            "TaskRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="plot-palette worker: the work item contract only",
        )
        self.logs = logs.LogGroup(
            self,
            "Logs",
            log_group_name=names.log_group("ecs", "worker"),
            retention=LOG_RETENTION,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self._image = ecs.ContainerImage.from_asset(
            str(ROOT), file=config.worker_dockerfile, exclude=IMAGE_EXCLUDES
        )
        # One Fargate Spot service per task size, each scaled on its own work queue's depth (not
        # RunTask with overrides: that would need a scheduler of our own to start, count and stop
        # tasks; a service per size keeps SQS + ECS the only scheduler, and idle sizes cost nothing).
        self.services: dict[TaskSize, ecs.FargateService] = {}
        self.task_definitions: dict[TaskSize, ecs.FargateTaskDefinition] = {}
        for size, queue in work_queues.items():
            self._size_service(config, storage, size, queue)
        self.task_definition = self.task_definitions[DEFAULT_TASK_SIZE]
        self.service = self.services[DEFAULT_TASK_SIZE]

        self._grant(storage, list(work_queues.values()), lifecycle)

    def _size_service(self, config: Config, storage: Storage, size: TaskSize, queue: sqs.IQueue) -> None:
        shape = TASK_SHAPES[size]
        suffix = size.value.capitalize()
        task_definition = ecs.FargateTaskDefinition(
            self,
            f"TaskDefinition{suffix}",
            cpu=shape.cpu_units,
            memory_limit_mib=shape.memory_mib,
            task_role=self.task_role,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        task_definition.add_container(
            "worker",
            image=self._image,
            command=["python", "-m", "functions.worker"],
            logging=ecs.LogDrivers.aws_logs(stream_prefix=f"worker-{size.value}", log_group=self.logs),
            environment={
                **worker_resources(storage, queue),
                "MODEL_PROVIDER": "bedrock",
                "POWERTOOLS_SERVICE_NAME": "plot-palette",
                "POWERTOOLS_LOG_LEVEL": "INFO",
                # The Fargate share of each batch's cost is billed at the task's size.
                "WORKER_TASK_CPU": str(shape.cpu_units),
                "WORKER_TASK_MEMORY_MIB": str(shape.memory_mib),
            },
            stop_timeout=Duration.seconds(120),  # a Spot interruption gives two minutes
        )
        service = ecs.FargateService(
            self,
            f"Service{suffix}",
            cluster=self.cluster,
            task_definition=task_definition,
            desired_count=0,
            min_healthy_percent=0,
            max_healthy_percent=200,
            assign_public_ip=True,
            security_groups=[self.security_group],
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            capacity_provider_strategies=[
                ecs.CapacityProviderStrategy(capacity_provider="FARGATE_SPOT", weight=1)
            ],
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=False),
        )
        self._scale_on_queue(service, queue, config.worker_max_tasks)
        self.task_definitions[size] = task_definition
        self.services[size] = service

    @staticmethod
    def _scale_on_queue(service: ecs.FargateService, work_queue: sqs.IQueue, max_tasks: int) -> None:
        # Scale on the work queue's depth: messages waiting plus messages being worked on (a worker
        # holds its message while it runs a work item), so a running item is never scaled away by an
        # empty "visible" count. Zero messages -> zero tasks: nothing runs at rest.
        depth = cloudwatch.MathExpression(
            expression="visible + inflight",
            using_metrics={
                "visible": work_queue.metric_approximate_number_of_messages_visible(
                    period=Duration.minutes(1), statistic="Maximum"
                ),
                "inflight": work_queue.metric_approximate_number_of_messages_not_visible(
                    period=Duration.minutes(1), statistic="Maximum"
                ),
            },
            period=Duration.minutes(1),
            label="work items queued or in progress",
        )
        scaling = service.auto_scale_task_count(min_capacity=0, max_capacity=max_tasks)
        scaling.scale_on_metric(
            "QueueDepth",
            metric=depth,
            adjustment_type=autoscaling.AdjustmentType.EXACT_CAPACITY,
            scaling_steps=[
                autoscaling.ScalingInterval(upper=1, change=0),
                *(autoscaling.ScalingInterval(lower=n, upper=n + 1, change=n) for n in range(1, max_tasks)),
                autoscaling.ScalingInterval(lower=max_tasks, change=max_tasks),
            ],
            cooldown=Duration.minutes(1),
            evaluation_periods=1,
        )

    def _grant(self, storage: Storage, work_queues: list[sqs.IQueue], lifecycle: sfn.IStateMachine) -> None:
        role = self.task_role
        # Read the template version and the job; record the task token (UpdateItem, conditional).
        storage.grant_items(storage.templates, role, "dynamodb:GetItem")
        storage.grant_items(storage.jobs, role, "dynamodb:GetItem", "dynamodb:UpdateItem")
        # One cost delta per unit of work (conditional put).
        storage.grant_items(
            storage.cost_tracking, role, "dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Query"
        )
        # Seed data in, outputs and checkpoints out.
        storage.grant_objects(role, "seed-data/", "s3:GetObject")
        storage.grant_objects(role, "jobs/", "s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload")
        storage.grant_list(role)  # a missing checkpoint answers 404 (NoSuchKey), not 403
        # Work items.
        for queue in {id(q): q for q in work_queues}.values():
            queue.grant_consume_messages(role)
        # SendTaskSuccess / SendTaskFailure / SendTaskHeartbeat for the lifecycle's waiting task.
        lifecycle.grant_task_response(role)
        # Task scale-in protection while the worker holds a work item (functions/worker/protection.py):
        # the ECS agent's endpoint calls UpdateTaskProtection with the task role's credentials; the
        # AWS docs name GetTaskProtection with it. Only this cluster's tasks (the ARN carries its name).
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["ecs:UpdateTaskProtection", "ecs:GetTaskProtection"],
                resources=[
                    f"arn:{Aws.PARTITION}:ecs:{Aws.REGION}:{Aws.ACCOUNT_ID}:task/{self.cluster.cluster_name}/*"
                ],
            )
        )
        # Bedrock: the models a template names are chosen at run time, so foundation models and the
        # cross-region inference profiles of this account are allowed (actions are exact).
        role.add_to_policy(bedrock_invoke_statement())
