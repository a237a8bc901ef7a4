"""The context values a deployment can set (``cdk deploy -c key=value`` or cdk.json)."""

from __future__ import annotations

from dataclasses import dataclass, field

from constructs import Node

from stacks.names import Names, Stage

# An inline Map runs at most 40 iterations at once (Step Functions quotas).
MAX_PARTITION_CONCURRENCY = 40


def _int(node: Node, key: str, default: int) -> int:
    value = node.try_get_context(key)
    return default if value is None else int(value)


def _bool(node: Node, key: str, default: bool) -> bool:
    value = node.try_get_context(key)
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def _list(node: Node, key: str, default: list[str]) -> list[str]:
    value = node.try_get_context(key)
    if value is None:
        return default
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return [str(item) for item in value]


@dataclass(frozen=True)
class Config:
    names: Names
    user_pool_id: str | None = None
    user_pool_client_id: str | None = None
    max_running_jobs: int = 5
    allowed_origins: list[str] = field(default_factory=lambda: ["*"])
    throttle_rate_limit: int = 50
    throttle_burst_limit: int = 100
    worker_max_tasks: int = 5
    heartbeat_seconds: int = 300
    job_timeout_seconds: int = 86400
    batch_size: int = 10
    # Records per partition (one work item); rounded up to whole batches by the lifecycle, which
    # also caps a job at 500 partitions (statemachines/README.md).
    partition_records: int = 1000
    # Partitions of one job in flight at once (the lifecycle Map's MaxConcurrency), at most 40.
    partition_concurrency: int = 10
    worker_dockerfile: str = "Dockerfile"
    # How many of the marketplace's Templates GSIs (popular, name) to create: CloudFormation adds at
    # most one GSI per table update, so a stack deployed before them upgrades with 1, then 2.
    marketplace_indexes: int = 2
    # Fair share and quotas (issue 13). None: max(1, max_running_jobs // 2).
    max_running_jobs_per_user: int | None = None
    max_queued_jobs_per_user: int = 100
    max_jobs_created_per_minute: int = 60
    # Reconciler: new executions a RUNNING job whose lifecycle was lost gets before it is FAILED.
    max_lifecycle_redrives: int = 3
    # Operator's view (prod stage): alarms notify this SNS topic (none: alarms without actions);
    # per-route API metrics (API Gateway detailed metrics, billed as custom metrics).
    alarm_topic_arn: str | None = None
    api_route_metrics: bool = True
    # Minutes of reconciler repairs in a row that raise the alarm.
    repairs_alarm_minutes: int = 15

    @property
    def per_user_running_cap(self) -> int:
        if self.max_running_jobs_per_user is not None:
            return min(self.max_running_jobs_per_user, self.max_running_jobs)
        return max(1, self.max_running_jobs // 2)

    def __post_init__(self) -> None:
        if self.partition_records < 1:
            raise ValueError("context partition_records must be at least 1")
        if not 1 <= self.partition_concurrency <= MAX_PARTITION_CONCURRENCY:
            raise ValueError(f"context partition_concurrency must be 1..{MAX_PARTITION_CONCURRENCY}")

    @property
    def stage(self) -> Stage:
        return self.names.stage

    @property
    def is_local(self) -> bool:
        return self.names.stage is Stage.LOCAL

    @classmethod
    def from_context(cls, node: Node) -> Config:
        stage = Stage(node.try_get_context("stage") or Stage.PROD.value)
        names = Names.for_stage(stage, node.try_get_context("prefix"))
        pool = node.try_get_context("user_pool_id")
        client = node.try_get_context("user_pool_client_id")
        if bool(pool) != bool(client):
            raise ValueError("context user_pool_id and user_pool_client_id are set together or not at all")
        max_running = _int(node, "max_running_jobs", 5)
        return cls(
            names=names,
            user_pool_id=pool or None,
            user_pool_client_id=client or None,
            max_running_jobs=max_running,
            allowed_origins=_list(node, "allowed_origins", ["*"]),
            throttle_rate_limit=_int(node, "throttle_rate_limit", 50),
            throttle_burst_limit=_int(node, "throttle_burst_limit", 100),
            worker_max_tasks=_int(node, "worker_max_tasks", max_running),
            heartbeat_seconds=_int(node, "heartbeat_seconds", 300),
            job_timeout_seconds=_int(node, "job_timeout_seconds", 86400),
            batch_size=_int(node, "batch_size", 10),
            partition_records=_int(node, "partition_records", 1000),
            partition_concurrency=_int(node, "partition_concurrency", 10),
            worker_dockerfile=str(node.try_get_context("worker_dockerfile") or "Dockerfile"),
            marketplace_indexes=_marketplace_indexes(node),
            max_running_jobs_per_user=(
                None
                if node.try_get_context("max_running_jobs_per_user") is None
                else _int(node, "max_running_jobs_per_user", 1)
            ),
            max_queued_jobs_per_user=_int(node, "max_queued_jobs_per_user", 100),
            max_jobs_created_per_minute=_int(node, "max_jobs_created_per_minute", 60),
            max_lifecycle_redrives=_int(node, "max_lifecycle_redrives", 3),
            alarm_topic_arn=node.try_get_context("alarm_topic_arn") or None,
            api_route_metrics=_bool(node, "api_route_metrics", True),
            repairs_alarm_minutes=_int(node, "repairs_alarm_minutes", 15),
        )


def _marketplace_indexes(node: Node) -> int:
    count = _int(node, "marketplace_indexes", 2)
    if not 0 <= count <= 2:
        raise ValueError("context marketplace_indexes is 0, 1 or 2")
    return count
