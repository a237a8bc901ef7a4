"""Reconciler: an EventBridge schedule (every minute) -> one reconciliation pass.

Locally MiniStack fires the same schedule rule (it sweeps rate() rules every 10 s, and a rule restored
from a saved state fires on its first sweep, so a restarted runtime reconciles within seconds).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common import metric_names
from functions.common.aws import client
from functions.common.events import EventPublisher
from functions.common.observability import logger, metrics, publish_metrics, traced
from functions.common.settings import load_settings
from functions.promoter.repository import LifecycleExecutions, QueueRepository
from functions.promoter.service import PromoterService
from functions.reconciler.models import ReconcileReport, ReconcilerSettings
from functions.reconciler.repository import LifecycleRuns, MissedCostDeltas, QueuedSets, ReconcilerJobs
from functions.reconciler.service import ReconcilerService
from functions.rollup.repository import CostRepository
from functions.rollup.service import CostRollupService

SETTINGS = ReconcilerSettings


def build_service(settings: ReconcilerSettings) -> ReconcilerService:
    dynamodb, stepfunctions = client("dynamodb"), client("stepfunctions")
    slots = QueueRepository(dynamodb, settings.queue_table, settings.jobs_table)
    promoter = PromoterService(
        repository=slots,
        executions=LifecycleExecutions(stepfunctions, settings.lifecycle_state_machine_arn),
        max_running_jobs=settings.max_running_jobs,
        max_running_jobs_per_user=settings.max_running_jobs_per_user,
    )
    return ReconcilerService(
        promoter=promoter,
        slots=slots,
        jobs=ReconcilerJobs(dynamodb, settings.jobs_table),
        runs=LifecycleRuns(stepfunctions, settings.lifecycle_state_machine_arn),
        publisher=EventPublisher(client("events"), settings.event_bus_name),
        costs=(
            MissedCostDeltas(dynamodb, settings.cost_tracking_table),
            CostRollupService(CostRepository(dynamodb, settings.cost_tracking_table, settings.jobs_table)),
        ),
        queued_sets=QueuedSets(dynamodb, settings.queue_table, settings.jobs_table),
        # The stream's own removal gets the same grace as its promotions.
        queued_set_grace_seconds=settings.promotion_repair_after_seconds,
        rollup_repair_after_seconds=settings.rollup_repair_after_seconds,
        max_redrives=settings.max_lifecycle_redrives,
        redrive_grace_seconds=settings.redrive_grace_seconds,
        promotion_repair_after_seconds=settings.promotion_repair_after_seconds,
    )


def record_metrics(report: ReconcileReport) -> None:
    metrics.add_metric(name=metric_names.RECONCILER_REPAIRS, unit=MetricUnit.Count, value=report.total)
    for kind, count in report.repairs().items():
        metrics.add_metric(
            name=f"{metric_names.RECONCILER_REPAIR_PREFIX}{kind}", unit=MetricUnit.Count, value=count
        )
    metrics.add_metric(name=metric_names.QUEUED_JOBS, unit=MetricUnit.Count, value=report.queued)
    metrics.add_metric(name=metric_names.RUNNING_JOBS, unit=MetricUnit.Count, value=report.running)
    for waited in report.waited_seconds.values():
        metrics.add_metric(name=metric_names.PROMOTION_DELAY, unit=MetricUnit.Seconds, value=waited)


@publish_metrics
@traced
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = build_service(load_settings(SETTINGS)).reconcile()
    record_metrics(report)
    return {"repairs": report.repairs(), "queued": report.queued, "running": report.running}
