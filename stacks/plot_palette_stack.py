"""The whole system in one stack per stage: storage, auth + API, orchestration, worker.

One stack (not four) keeps every reference inside one template: no cross-stack exports to order or
to break on update, and the ``local`` stage deploys onto the emulator in one CreateStack.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from functions.common.api import API_DOMAINS, served_routes
from functions.common.sizes import DEFAULT_TASK_SIZE
from stacks.api import Api, ApiEnvironment, Auth
from stacks.bundling import ARCHITECTURE, RUNTIME, dependencies_layer_code, function_code
from stacks.config import Config
from stacks.lambdas import handler_module
from stacks.monitoring import Monitored, Monitoring
from stacks.nag import suppress_accepted_findings
from stacks.names import output_key
from stacks.orchestration import Orchestration
from stacks.reconciler import Reconciler
from stacks.storage import Storage
from stacks.worker import Worker, worker_resources


class PlotPaletteStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: Config, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        code = function_code(bundle=self.bundling_required)
        layers: list[lambda_.ILayerVersion] = []
        if not config.is_local:
            # In the local stage the emulator runs handlers with the project's own environment.
            layers.append(
                lambda_.LayerVersion(
                    self,
                    "Dependencies",
                    code=dependencies_layer_code(),
                    compatible_runtimes=[RUNTIME],
                    compatible_architectures=[ARCHITECTURE],
                    description="plot-palette runtime dependencies (pyproject.toml)",
                )
            )

        self.storage = Storage(self, "Storage", config=config)
        self.orchestration = Orchestration(
            self, "Orchestration", config=config, storage=self.storage, code=code, layers=layers
        )
        self.auth = Auth(self, "Auth", config=config)
        self.api = Api(
            self,
            "Api",
            config=config,
            auth=self.auth,
            storage=self.storage,
            env=ApiEnvironment(code=code, layers=layers, bus_name=self.orchestration.bus.event_bus_name),
        )
        for fn in self.api.publishers:
            self.orchestration.bus.grant_put_events_to(fn)
        self.reconciler = Reconciler(
            self,
            "Reconciler",
            config=config,
            storage=self.storage,
            orchestration=self.orchestration,
            code=code,
            layers=layers,
        )
        self.worker: Worker | None = None
        if not config.is_local:  # the emulator runs no ECS; locally the worker is a process
            self.worker = Worker(
                self,
                "Worker",
                config=config,
                storage=self.storage,
                work_queues=dict(self.orchestration.work_queues),
                lifecycle=self.orchestration.lifecycle,
            )
        self.monitoring: Monitoring | None = None
        if not config.is_local:
            self.monitoring = self._monitoring()
        self._outputs()
        suppress_accepted_findings(self)

    def _monitoring(self) -> Monitoring:
        orchestration = self.orchestration
        return Monitoring(
            self,
            "Monitoring",
            config=self.config,
            monitored=Monitored(
                http_api=self.api.http_api,
                routes=[
                    (method, path)
                    for domain in API_DOMAINS
                    for method, path in served_routes(handler_module(domain).app)
                ],
                state_machines={
                    "Lifecycle": orchestration.lifecycle,
                    "Cancellation": orchestration.cancellation,
                    "Cleanup": orchestration.cleanup,
                },
                stream_consumers={
                    "Promoter": orchestration.promoter.function,
                    "Rollup": orchestration.rollup.function,
                },
                work_queues={
                    size.value: queue
                    for size, queue in orchestration.work_queues.items()
                    if size is DEFAULT_TASK_SIZE or queue is not orchestration.work_queue
                },
                dead_letter_queues={
                    "WorkDlq": orchestration.work_dlq,
                    "RuleTargetDlq": orchestration.rule_target_dlq,
                    **{
                        f"{name.title()}Failures": queue
                        for name, queue in orchestration.stream_failures.items()
                    },
                },
            ),
        )

    def _outputs(self) -> None:
        storage, orchestration = self.storage, self.orchestration
        outputs = {
            "ApiEndpoint": (self.api.url, "Base URL of the HTTP API"),
            "UserPoolId": (self.auth.user_pool.user_pool_id, "Cognito user pool of the JWT authorizer"),
            "UserPoolClientId": (self.auth.client.user_pool_client_id, "App client the web UI signs in with"),
            "BucketName": (storage.bucket.bucket_name, "Seed data uploads and job outputs"),
            "EventBusName": (orchestration.bus.event_bus_name, "Domain events (rules, archive)"),
            # For operators.
            "WorkQueueUrl": (orchestration.work_queue.queue_url, "Work items for the generation worker"),
            "JobsTableName": (storage.jobs.table_name, "JOBS_TABLE"),
            "QueueTableName": (storage.queue.table_name, "QUEUE_TABLE"),
            "TemplatesTableName": (storage.templates.table_name, "TEMPLATES_TABLE"),
            "CostTrackingTableName": (storage.cost_tracking.table_name, "COST_TRACKING_TABLE"),
            "IdempotencyTableName": (storage.idempotency.table_name, "IDEMPOTENCY_TABLE"),
            "LifecycleStateMachineArn": (orchestration.lifecycle.state_machine_arn, "Job lifecycle"),
            "CancellationStateMachineArn": (orchestration.cancellation.state_machine_arn, "Job cancellation"),
            "CleanupStateMachineArn": (orchestration.cleanup.state_machine_arn, "Job cleanup"),
        }
        if self.config.is_local:
            outputs.update(self._local_runtime_outputs())
        for name, (value, description) in outputs.items():
            CfnOutput(self, name, value=value, description=description)

    def _local_runtime_outputs(self) -> dict[str, tuple[str, str]]:
        """What the local runtime needs, each output named after the environment variable it fills.

        The key is the variable in PascalCase (``JOBS_TABLE`` -> ``JobsTable``; CloudFormation output
        keys are alphanumeric); ``local/runtime/resources.py`` turns it back. The runtime gives every
        such value to the worker processes as their environment, so a new setting for the local
        worker (a context value, say) is one line here.
        """
        environment = {
            **worker_resources(self.storage, self.orchestration.work_queue),
            "API_ID": self.api.http_api.api_id,
            "USER_POOL_ID": self.auth.user_pool.user_pool_id,
            "USER_POOL_CLIENT_ID": self.auth.client.user_pool_client_id,
            "EVENT_BUS_NAME": self.orchestration.bus.event_bus_name,
            "QUEUE_TABLE": self.storage.queue.table_name,
            "IDEMPOTENCY_TABLE": self.storage.idempotency.table_name,
            "LIFECYCLE_STATE_MACHINE_ARN": self.orchestration.lifecycle.state_machine_arn,
            "CANCELLATION_STATE_MACHINE_ARN": self.orchestration.cancellation.state_machine_arn,
            "CLEANUP_STATE_MACHINE_ARN": self.orchestration.cleanup.state_machine_arn,
        }
        return {
            output_key(variable): (value, f"{variable} for the local runtime")
            for variable, value in environment.items()
        }
