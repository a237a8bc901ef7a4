"""The reconciler: a Lambda on an EventBridge schedule (every minute) that repairs what the streams
and the executions missed (functions/reconciler, docs/data-model.md "Reconciler").

The rule is on the default bus (schedules live there). In the ``local`` stage MiniStack fires the
same rule: it sweeps ``rate()`` rules every 10 s, and a rule restored from saved state fires on its
first sweep, so a restarted local runtime reconciles within seconds of starting.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from stacks.config import Config
from stacks.lambdas import PythonFunction
from stacks.orchestration import Orchestration
from stacks.storage import Storage

SCHEDULE_MINUTES = 1


class Reconciler(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        storage: Storage,
        orchestration: Orchestration,
        code: lambda_.Code,
        layers: list[lambda_.ILayerVersion],
    ) -> None:
        super().__init__(scope, construct_id)
        lifecycle = orchestration.lifecycle
        self.function = PythonFunction(
            self,
            "Function",
            config=config,
            domain="reconciler",
            code=code,
            layers=layers,
            description="plot-palette reconciler (every minute: stuck jobs, leaked slots, missed promotions)",
            timeout_seconds=55,
            resources=orchestration.promotion_resources
            | {
                "EVENT_BUS_NAME": orchestration.bus.event_bus_name,
                "MAX_LIFECYCLE_REDRIVES": str(config.max_lifecycle_redrives),
            },
        )
        fn = self.function.function
        if not config.is_local:
            # One pass at a time: two overlapping passes would only repeat conditional writes, but a
            # re-drive counted by one and not yet started could look lost to the other.
            cfn = fn.node.default_child
            assert isinstance(cfn, lambda_.CfnFunction)
            cfn.reserved_concurrent_executions = 1
        self.rule = events.Rule(
            self,
            "Schedule",
            rule_name=config.names.function("reconciler-schedule"),
            description="Run the plot-palette reconciler every minute",
            schedule=events.Schedule.rate(Duration.minutes(SCHEDULE_MINUTES)),
            targets=[targets.LambdaFunction(fn, retry_attempts=0)],
        )
        # Promote and re-drive like the promoter: Queue (slots, waiting jobs), Jobs (holders, the
        # re-drive count, FAILED), start and describe lifecycle executions, Job Failed on the bus.
        storage.queue.grant_read_write_data(fn)
        storage.jobs.grant_read_write_data(fn)
        # Cost deltas whose stream record was lost: read them, roll them up like the rollup does.
        storage.cost_tracking.grant_read_write_data(fn)
        lifecycle.grant_start_execution(fn)
        lifecycle.grant_execution(fn, "states:DescribeExecution")
        orchestration.bus.grant_put_events_to(fn)
