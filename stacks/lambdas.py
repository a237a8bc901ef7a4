"""One way to build a Python Lambda function of the ``functions`` package.

Each function gets its own role (no AWS managed policy) whose only log permission is writing to its
own log group, created here with a retention (no LogRetention custom resource, so the local stage
stays plain CloudFormation). Its environment is what the handler's ``SETTINGS`` class reads, taken
from the resources the stack offers: nothing more, and a required one nobody offers fails the synth.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.bundling import ARCHITECTURE, RUNTIME
from stacks.config import Config

LOG_RETENTION = logs.RetentionDays.ONE_MONTH


def handler_module(domain: str) -> ModuleType:
    return importlib.import_module(f"functions.{domain}.handler")


def settings_environment(domain: str, resources: Mapping[str, str]) -> dict[str, str]:
    """The variables ``functions.<domain>.handler.SETTINGS`` reads that ``resources`` provides."""
    model = handler_module(domain).SETTINGS
    environment: dict[str, str] = {}
    for field in model.model_fields.values() if model is not None else ():
        name = str(field.validation_alias)
        if name in resources:
            environment[name] = resources[name]
        elif field.is_required():
            raise ValueError(f"functions.{domain} requires {name}, which the stack does not provide")
    return environment


# Every function's environment besides its settings (benchmarks/cold_start.py measures with it).
BASE_ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME": "plot-palette",
    "POWERTOOLS_METRICS_NAMESPACE": "PlotPalette",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    # No pydantic plugins are used: skip their discovery (an entry-point scan of every installed
    # distribution) at the first model of every cold start.
    "PYDANTIC_DISABLE_PLUGINS": "__all__",
}


class PythonFunction(Construct):
    """A function whose handler is ``functions.<domain>.handler.lambda_handler``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        domain: str,
        code: lambda_.Code,
        layers: list[lambda_.ILayerVersion],
        resources: Mapping[str, str],
        timeout_seconds: int = 29,
        memory_size: int = 512,
        description: str = "",
    ) -> None:
        super().__init__(scope, construct_id)
        name = config.names.function(domain.replace("_", "-"))
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/lambda/{name}",
            retention=LOG_RETENTION,
            removal_policy=RemovalPolicy.DESTROY if config.is_local else RemovalPolicy.RETAIN,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{name}: only the grants its code needs",
        )
        self.log_group.grant_write(self.role)
        base_environment = dict(BASE_ENVIRONMENT)
        if config.is_local:
            # No X-Ray daemon on the emulator.
            base_environment["POWERTOOLS_TRACE_DISABLED"] = "true"
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=name,
            description=description or f"plot-palette {domain}",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=f"functions.{domain}.handler.lambda_handler",
            code=code,
            layers=layers,
            role=self.role,
            log_group=self.log_group,
            environment={**base_environment, **settings_environment(domain, resources)},
            timeout=Duration.seconds(timeout_seconds),
            memory_size=memory_size,
            tracing=lambda_.Tracing.DISABLED if config.is_local else lambda_.Tracing.ACTIVE,
        )
