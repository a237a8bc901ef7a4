"""The operator's view (prod stage): one CloudWatch dashboard and an alarm per failure mode.

Alarms notify the SNS topic named by the context value ``alarm_topic_arn`` (without it they exist
with no action, visible in the console). Thresholds are module constants, asserted by tests/infra.
The local stage has none of this: MiniStack's CloudFormation rejects metric-math alarms and nothing
there reads CloudWatch.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from functions.common import metric_names
from stacks.config import Config

FIVE_MINUTES = Duration.minutes(5)
API_5XX_RATE_PERCENT = 5  # 5xx / requests over 5 minutes
ITERATOR_AGE_MS = 60_000  # a stream consumer a minute behind, for 5 minutes
OLDEST_WORK_ITEM_SECONDS = 900  # a work item nobody picked up for 15 minutes
EXECUTIONS_FAILED = 1  # any failed execution in 5 minutes
EXECUTIONS_TIMED_OUT = 1
DLQ_MESSAGES = 1  # any message in a dead-letter queue


@dataclass(frozen=True)
class Monitored:
    """What the dashboard and the alarms look at."""

    http_api: apigw.HttpApi
    routes: list[tuple[str, str]]  # (method, path)
    state_machines: dict[str, sfn.StateMachine]
    stream_consumers: dict[str, lambda_.IFunction]
    work_queues: dict[str, sqs.IQueue]  # one per task size
    dead_letter_queues: dict[str, sqs.IQueue]


def business_metric(name: str, statistic: str = "Sum", period: Duration = FIVE_MINUTES) -> cw.Metric:
    return cw.Metric(
        namespace=metric_names.NAMESPACE,
        metric_name=name,
        dimensions_map=metric_names.DIMENSIONS,
        statistic=statistic,
        period=period,
    )


class Monitoring(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: Config, monitored: Monitored) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._m = monitored
        self.topic: sns.ITopic | None = (
            sns.Topic.from_topic_arn(self, "AlarmTopic", config.alarm_topic_arn)
            if config.alarm_topic_arn
            else None
        )
        self.alarms: dict[str, cw.Alarm] = {}
        self._alarms()
        self.dashboard = cw.Dashboard(
            self, "Dashboard", dashboard_name=config.names.prefix, default_interval=Duration.hours(3)
        )
        self._dashboard()

    # --- alarms -----------------------------------------------------------------------------------

    def _alarm(
        self,
        cid: str,
        metric: cw.Metric | cw.MathExpression,
        threshold: float,
        description: str,
        evaluation_periods: int = 1,
        datapoints_to_alarm: int | None = None,
    ) -> None:
        alarm = metric.create_alarm(
            self,
            cid,
            alarm_name=f"{self._config.names.prefix}-{cid}",
            alarm_description=description,
            threshold=threshold,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        if self.topic is not None:
            alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
        self.alarms[cid] = alarm

    def _alarms(self) -> None:
        api = self._m.http_api
        rate = cw.MathExpression(
            expression="IF(requests > 0, 100 * errors / requests, 0)",
            using_metrics={
                "errors": api.metric_server_error(period=FIVE_MINUTES, statistic="Sum"),
                "requests": api.metric_count(period=FIVE_MINUTES, statistic="Sum"),
            },
            period=FIVE_MINUTES,
            label="5xx %",
        )
        self._alarm("Api5xxRate", rate, API_5XX_RATE_PERCENT, "More than 5% of API requests answered 5xx")
        for name, machine in self._m.state_machines.items():
            self._alarm(
                f"{name}ExecutionsFailed",
                machine.metric_failed(period=FIVE_MINUTES, statistic="Sum"),
                EXECUTIONS_FAILED,
                f"{name} executions failed",
            )
            self._alarm(
                f"{name}ExecutionsTimedOut",
                machine.metric_timed_out(period=FIVE_MINUTES, statistic="Sum"),
                EXECUTIONS_TIMED_OUT,
                f"{name} executions timed out",
            )
        for name, fn in self._m.stream_consumers.items():
            self._alarm(
                f"{name}IteratorAge",
                fn.metric("IteratorAge", period=Duration.minutes(1), statistic="Maximum"),
                ITERATOR_AGE_MS,
                f"The {name} stream consumer is more than a minute behind",
                evaluation_periods=5,
            )
        for name, queue in self._m.dead_letter_queues.items():
            self._alarm(
                f"{name}NotEmpty",
                queue.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES, statistic="Maximum"),
                DLQ_MESSAGES,
                f"{name} holds messages: something failed for good; inspect and redrive",
            )
        for size, queue in self._m.work_queues.items():
            self._alarm(
                f"OldestWorkItemAge{size.capitalize()}",
                queue.metric_approximate_age_of_oldest_message(period=FIVE_MINUTES, statistic="Maximum"),
                OLDEST_WORK_ITEM_SECONDS,
                f"A {size} work item has waited 15 minutes for a worker",
            )
        minutes = self._config.repairs_alarm_minutes
        self._alarm(
            "ReconcilerRepairing",
            business_metric(metric_names.RECONCILER_REPAIRS, period=Duration.minutes(1)),
            1,
            f"The reconciler repaired something every minute for {minutes} minutes: streams or "
            "executions keep missing work",
            evaluation_periods=minutes,
            datapoints_to_alarm=minutes,
        )

    # --- dashboard --------------------------------------------------------------------------------

    def _graph(self, title: str, metrics: list[cw.IMetric], width: int = 8, **kw: object) -> cw.GraphWidget:
        return cw.GraphWidget(title=title, left=metrics, width=width, height=6, **kw)  # type: ignore[arg-type]

    def _route_metric(self, name: str, method: str, path: str, statistic: str) -> cw.Metric:
        return cw.Metric(
            namespace="AWS/ApiGateway",
            metric_name=name,
            dimensions_map={
                "ApiId": self._m.http_api.api_id,
                "Stage": "$default",
                "Method": method,
                "Resource": path,
            },
            statistic=statistic,
            period=FIVE_MINUTES,
            label=f"{method} {path}",
        )

    def _dashboard(self) -> None:
        routes = self._m.routes
        self.dashboard.add_widgets(
            self._graph("API 4xx per route", [self._route_metric("4xx", m, p, "Sum") for m, p in routes]),
            self._graph("API 5xx per route", [self._route_metric("5xx", m, p, "Sum") for m, p in routes]),
            self._graph(
                "API latency p90 per route", [self._route_metric("Latency", m, p, "p90") for m, p in routes]
            ),
        )
        machines = self._m.state_machines
        self.dashboard.add_widgets(
            *[
                self._graph(
                    f"{name} executions",
                    [
                        machine.metric_started(period=FIVE_MINUTES, statistic="Sum", label="started"),
                        machine.metric_failed(period=FIVE_MINUTES, statistic="Sum", label="failed"),
                        machine.metric_timed_out(period=FIVE_MINUTES, statistic="Sum", label="timed out"),
                    ],
                )
                for name, machine in machines.items()
            ]
        )
        self.dashboard.add_widgets(
            self._graph(
                "Stream iterator age (ms)",
                [
                    fn.metric("IteratorAge", period=Duration.minutes(1), statistic="Maximum", label=name)
                    for name, fn in self._m.stream_consumers.items()
                ],
            ),
            self._graph(
                "Work queues: depth (left), oldest item in s (right)",
                [
                    q.metric_approximate_number_of_messages_visible(label=size)
                    for size, q in self._m.work_queues.items()
                ],
                right=[
                    q.metric_approximate_age_of_oldest_message(label=size)
                    for size, q in self._m.work_queues.items()
                ],
            ),
            self._graph(
                "Dead-letter queues",
                [
                    q.metric_approximate_number_of_messages_visible(statistic="Maximum", label=name)
                    for name, q in self._m.dead_letter_queues.items()
                ],
            ),
        )
        finished = [business_metric(name) for name in metric_names.JOBS_BY_TERMINAL_STATUS.values()]
        self.dashboard.add_widgets(
            self._graph(
                "Jobs by status",
                [
                    business_metric(metric_names.QUEUED_JOBS, "Maximum", Duration.minutes(1)),
                    business_metric(metric_names.RUNNING_JOBS, "Maximum", Duration.minutes(1)),
                ],
                right=[business_metric(metric_names.JOBS_CREATED), *finished],
            ),
            self._graph(
                "Cost per hour ($) and records",
                [business_metric(metric_names.COST, period=Duration.hours(1))],
                right=[business_metric(metric_names.RECORDS_GENERATED, period=Duration.hours(1))],
            ),
            self._graph(
                "Promotion delay (s) and reconciler repairs",
                [business_metric(metric_names.PROMOTION_DELAY, "p90")],
                right=[business_metric(metric_names.RECONCILER_REPAIRS, period=Duration.minutes(1))],
            ),
        )
