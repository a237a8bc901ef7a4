"""The operator's view in the prod stage: an alarm per failure mode with its threshold, each on the
SNS topic given as context; one dashboard with every panel; the reconciler on its schedule."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.common import metric_names
from stacks import monitoring
from stacks.names import Stage
from tests.infra.conftest import Synthesized, get_att, ref

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

TOPIC = "arn:aws:sns:us-east-1:123456789012:plot-palette-alarms"


@pytest.fixture(scope="module")
def with_topic(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The prod stage synthesized with ``-c alarm_topic_arn=...``."""
    from tests.infra.conftest import _synth_with

    return _synth_with(Stage.PROD, tmp_path_factory.mktemp("topic"), {"alarm_topic_arn": TOPIC})


def _monitoring_alarms(stack: Synthesized) -> list[dict[str, Any]]:
    """The alarms of the Monitoring construct (the worker's scaling policies make alarms of their own)."""
    return [a for lid, a in stack.of_type("AWS::CloudWatch::Alarm").items() if lid.startswith("Monitoring")]


def _alarm(stack: Synthesized, suffix: str) -> dict[str, Any]:
    _, alarm = stack.one("AWS::CloudWatch::Alarm", AlarmName=f"{stack.names.prefix}-{suffix}")
    return alarm["Properties"]


def _metric(props: dict[str, Any]) -> tuple[str, str]:
    return props["Namespace"], props["MetricName"]


EXPECTED = {
    # alarm -> (namespace, metric, threshold, evaluation periods)
    "LifecycleExecutionsFailed": ("AWS/States", "ExecutionsFailed", monitoring.EXECUTIONS_FAILED, 1),
    "LifecycleExecutionsTimedOut": ("AWS/States", "ExecutionsTimedOut", monitoring.EXECUTIONS_TIMED_OUT, 1),
    "CancellationExecutionsFailed": ("AWS/States", "ExecutionsFailed", 1, 1),
    "CancellationExecutionsTimedOut": ("AWS/States", "ExecutionsTimedOut", 1, 1),
    "CleanupExecutionsFailed": ("AWS/States", "ExecutionsFailed", 1, 1),
    "CleanupExecutionsTimedOut": ("AWS/States", "ExecutionsTimedOut", 1, 1),
    "PromoterIteratorAge": ("AWS/Lambda", "IteratorAge", 60_000, 5),
    "RollupIteratorAge": ("AWS/Lambda", "IteratorAge", 60_000, 5),
    "WorkDlqNotEmpty": ("AWS/SQS", "ApproximateNumberOfMessagesVisible", 1, 1),
    "RuleTargetDlqNotEmpty": ("AWS/SQS", "ApproximateNumberOfMessagesVisible", 1, 1),
    "PromoterFailuresNotEmpty": ("AWS/SQS", "ApproximateNumberOfMessagesVisible", 1, 1),
    "RollupFailuresNotEmpty": ("AWS/SQS", "ApproximateNumberOfMessagesVisible", 1, 1),
    **{
        f"OldestWorkItemAge{size}": ("AWS/SQS", "ApproximateAgeOfOldestMessage", 900, 1)
        for size in ("Small", "Medium", "Large", "Xlarge")
    },
    "ReconcilerRepairing": (metric_names.NAMESPACE, metric_names.RECONCILER_REPAIRS, 1, 15),
}


@pytest.mark.parametrize("suffix", list(EXPECTED))
def test_each_failure_mode_has_its_alarm_and_threshold(prod: Synthesized, suffix: str) -> None:
    namespace, metric, threshold, periods = EXPECTED[suffix]
    props = _alarm(prod, suffix)
    assert _metric(props) == (namespace, metric)
    assert props["Threshold"] == threshold
    assert props["EvaluationPeriods"] == periods
    assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert props["TreatMissingData"] == "notBreaching"
    if suffix == "ReconcilerRepairing":  # repairs in every one of the 15 one-minute periods
        assert props["DatapointsToAlarm"] == 15
        assert props["Period"] == 60
        assert props["Dimensions"] == [{"Name": "service", "Value": "plot-palette"}]


def test_the_5xx_alarm_is_a_rate_of_the_api_requests(prod: Synthesized) -> None:
    props = _alarm(prod, "Api5xxRate")
    assert props["Threshold"] == monitoring.API_5XX_RATE_PERCENT == 5
    queries = {q["Id"]: q for q in props["Metrics"]}
    assert queries["expr_1"]["Expression"] == "IF(requests > 0, 100 * errors / requests, 0)"
    assert queries["errors"]["MetricStat"]["Metric"]["MetricName"] == "5xx"
    assert queries["requests"]["MetricStat"]["Metric"]["MetricName"] == "Count"
    api_id = prod.logical_id("AWS::ApiGatewayV2::Api")
    for key in ("errors", "requests"):
        assert queries[key]["MetricStat"]["Metric"]["Dimensions"] == [{"Name": "ApiId", "Value": ref(api_id)}]


def test_every_alarm_is_listed_above(prod: Synthesized) -> None:
    names = {a["Properties"]["AlarmName"] for a in _monitoring_alarms(prod)}
    assert names == {f"{prod.names.prefix}-{s}" for s in [*EXPECTED, "Api5xxRate"]}


def test_alarms_notify_the_context_topic(prod: Synthesized, with_topic: Synthesized) -> None:
    assert all("AlarmActions" not in a["Properties"] for a in _monitoring_alarms(prod))
    alarms = _monitoring_alarms(with_topic)
    assert len(alarms) == len(EXPECTED) + 1
    assert all(a["Properties"]["AlarmActions"] == [TOPIC] for a in alarms)


def test_the_dashboard_shows_every_panel(prod: Synthesized) -> None:
    _, dashboard = prod.one("AWS::CloudWatch::Dashboard", DashboardName=prod.names.prefix)
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for title in (
        "API 4xx per route",
        "API 5xx per route",
        "API latency p90 per route",
        "Lifecycle executions",
        "Cancellation executions",
        "Cleanup executions",
        "Stream iterator age (ms)",
        "Work queues: depth (left), oldest item in s (right)",
        "Dead-letter queues",
        "Jobs by status",
        "Cost per hour ($) and records",
        "Promotion delay (s) and reconciler repairs",
    ):
        assert title in body, title
    for metric in (
        metric_names.JOBS_CREATED,
        *metric_names.JOBS_BY_TERMINAL_STATUS.values(),
        metric_names.QUEUED_JOBS,
        metric_names.RUNNING_JOBS,
        metric_names.COST,
        metric_names.RECORDS_GENERATED,
        metric_names.PROMOTION_DELAY,
        metric_names.RECONCILER_REPAIRS,
        "ApproximateAgeOfOldestMessage",
        "IteratorAge",
    ):
        assert f'\\"{metric}\\"' in body, metric
    assert '\\"POST\\",\\"Resource\\",\\"/jobs/{job_id}/cancel\\"' in body  # per route


def test_api_stage_writes_per_route_metrics_in_prod_only(prod: Synthesized, local: Synthesized) -> None:
    ((_, stage),) = prod.of_type("AWS::ApiGatewayV2::Stage").items()
    assert stage["Properties"]["DefaultRouteSettings"]["DetailedMetricsEnabled"] is True
    ((_, local_stage),) = local.of_type("AWS::ApiGatewayV2::Stage").items()
    assert not local_stage["Properties"].get("DefaultRouteSettings", {}).get("DetailedMetricsEnabled")


def test_local_stage_has_no_dashboard_or_alarms(local: Synthesized) -> None:
    assert not _monitoring_alarms(local)
    assert not local.of_type("AWS::CloudWatch::Dashboard")


def test_the_reconciler_runs_every_minute_in_both_stages(each: Synthesized) -> None:
    fn_id, fn = each.one("AWS::Lambda::Function", Handler="functions.reconciler.handler.lambda_handler")
    _, rule = each.one("AWS::Events::Rule", ScheduleExpression="rate(1 minute)")
    assert rule["Properties"]["State"] == "ENABLED"
    assert [t["Arn"] for t in rule["Properties"]["Targets"]] == [get_att(fn_id, "Arn")]
    variables = fn["Properties"]["Environment"]["Variables"]
    assert variables["MAX_RUNNING_JOBS_PER_USER"] == "2"  # max(1, 5 // 2)
    assert variables["MAX_LIFECYCLE_REDRIVES"] == "3"
    if each.stage is Stage.PROD:
        assert fn["Properties"]["ReservedConcurrentExecutions"] == 1
