"""Names of the business metrics (CloudWatch namespace ``PlotPalette``, dimension ``service``).

One place for the functions that emit them (Powertools Metrics, EMF) and the CDK dashboard and
alarms that read them (stacks/monitoring.py). Deliberately free of imports: the CDK app reads it.
"""

from __future__ import annotations

NAMESPACE = "PlotPalette"
SERVICE = "plot-palette"
DIMENSIONS = {"service": SERVICE}

JOBS_CREATED = "JobsCreated"  # jobs API, per 201 (an Idempotency-Key replay counts again)
# Jobs stream (promoter), per transition into the status; at-least-once like the stream.
JOBS_BY_TERMINAL_STATUS = {
    "COMPLETED": "JobsCompleted",
    "FAILED": "JobsFailed",
    "BUDGET_EXCEEDED": "JobsBudgetExceeded",
    "CANCELLED": "JobsCancelled",
}
RECORDS_GENERATED = "RecordsGenerated"  # cost rollup, per applied delta
COST = "CostDollars"  # cost rollup, per applied delta: Sum per hour is the cost per hour
PROMOTION_DELAY = "PromotionDelay"  # promoter and reconciler, seconds a promoted job waited
QUEUED_JOBS = "QueuedJobs"  # reconciler, once a minute: jobs waiting
RUNNING_JOBS = "RunningJobs"  # reconciler, once a minute: slots held
RECONCILER_REPAIRS = "ReconcilerRepairs"  # reconciler, per pass: every repair (the alarm's metric)
# reconciler, per pass: one metric per kind of repair (ReconcileReport.repairs()), prefixed
RECONCILER_REPAIR_PREFIX = "Reconciler"
