"""Every resource name of the app, from one place, prefixed per stage.

The names follow docs/data-model.md: ``{prefix}-Jobs`` and so on, where the prefix is
``plot-palette`` for the ``prod`` stage and
``plot-palette-local`` for the ``local`` stage, so both can live side by side in one account or
emulator. The context value ``prefix`` overrides it (a second deployment in the same account).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

DEFAULT_PREFIX = "plot-palette"


class Stage(StrEnum):
    PROD = "prod"
    LOCAL = "local"


@dataclass(frozen=True)
class Names:
    stage: Stage
    prefix: str

    @classmethod
    def for_stage(cls, stage: Stage, prefix: str | None = None) -> Names:
        default = DEFAULT_PREFIX if stage is Stage.PROD else f"{DEFAULT_PREFIX}-{stage.value}"
        return cls(stage=stage, prefix=prefix or default)

    # CloudFormation stack
    @property
    def stack(self) -> str:
        return "PlotPalette" if self.stage is Stage.PROD else f"PlotPalette-{self.stage.value}"

    # DynamoDB (docs/data-model.md)
    @property
    def jobs_table(self) -> str:
        return f"{self.prefix}-Jobs"

    @property
    def queue_table(self) -> str:
        return f"{self.prefix}-Queue"

    @property
    def templates_table(self) -> str:
        return f"{self.prefix}-Templates"

    @property
    def cost_tracking_table(self) -> str:
        return f"{self.prefix}-CostTracking"

    @property
    def idempotency_table(self) -> str:
        return f"{self.prefix}-Idempotency"

    def bucket(self, account: str, region: str) -> str:
        """S3 names are global: in AWS the bucket carries the account and region to be unique."""
        if self.stage is Stage.LOCAL:
            return f"{self.prefix}-data"
        return f"{self.prefix}-data-{account}-{region}"

    # EventBridge and Step Functions
    @property
    def event_bus(self) -> str:
        return self.prefix

    @property
    def event_archive(self) -> str:
        return f"{self.prefix}-events"

    @property
    def lifecycle_state_machine(self) -> str:
        return f"{self.prefix}-job-lifecycle"

    @property
    def cancellation_state_machine(self) -> str:
        return f"{self.prefix}-job-cancellation"

    @property
    def cleanup_state_machine(self) -> str:
        return f"{self.prefix}-job-cleanup"

    # SQS
    @property
    def work_queue(self) -> str:
        return f"{self.prefix}-work"

    @property
    def work_dlq(self) -> str:
        return f"{self.prefix}-work-dlq"

    def stream_failures_queue(self, consumer: str) -> str:
        return f"{self.prefix}-{consumer}-failures"

    @property
    def rule_target_dlq(self) -> str:
        return f"{self.prefix}-rule-target-dlq"

    # Lambda, API, auth, worker
    def function(self, domain: str) -> str:
        return f"{self.prefix}-{domain}"

    @property
    def http_api(self) -> str:
        return f"{self.prefix}-api"

    @property
    def user_pool(self) -> str:
        return f"{self.prefix}-users"

    @property
    def user_pool_client(self) -> str:
        return f"{self.prefix}-web"

    @property
    def cluster(self) -> str:
        return f"{self.prefix}-workers"

    def log_group(self, kind: str, name: str) -> str:
        return f"/plot-palette/{self.prefix}/{kind}/{name}"


def output_key(variable: str) -> str:
    """The stack output named after an environment variable: ``WORK_QUEUE_URL`` -> ``WorkQueueUrl``.

    PascalCase because CloudFormation output keys are alphanumeric; the local runtime turns the key
    back into the variable (local/runtime/resources.py).
    """
    return "".join(part.capitalize() for part in variable.split("_"))
