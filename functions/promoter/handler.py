"""Queue promoter: the Jobs table stream (NEW_AND_OLD_IMAGES) → admit waiting jobs.

A record that takes a job out of QUEUED removes it from its user's QUEUED set (the jobs API's
queued quota; idempotent). A record triggers a promotion pass when a job was queued (INSERT, status
QUEUED) or a running slot was released (MODIFY that changes ``slot_released_at``). Records
are already committed when Lambda delivers them, so one successful pass covers the whole batch: the
first trigger record runs it and later ones only run another if it failed. A record whose images
do not parse, or whose pass fails, is reported alone in ``batchItemFailures``; the stream retries
it and the pass is idempotent.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common import metric_names
from functions.common.aws import client
from functions.common.observability import logger, metrics, publish_metrics, traced
from functions.common.settings import load_settings
from functions.common.streams import dynamodb_stream_processor
from functions.promoter.models import JobStreamRecord, PromoterSettings
from functions.promoter.repository import LifecycleExecutions, QueueRepository
from functions.promoter.service import PromoterService

SETTINGS = PromoterSettings


def build_service(settings: PromoterSettings) -> PromoterService:
    return PromoterService(
        repository=QueueRepository(client("dynamodb"), settings.queue_table, settings.jobs_table),
        executions=LifecycleExecutions(client("stepfunctions"), settings.lifecycle_state_machine_arn),
        max_running_jobs=settings.max_running_jobs,
        max_running_jobs_per_user=settings.max_running_jobs_per_user,
    )


class _BatchPromotion:
    """Runs the promotion pass at most once successfully per invocation."""

    def __init__(self, service: PromoterService) -> None:
        self._service = service
        self._done = False

    def handle(self, record: JobStreamRecord) -> None:
        left = record.left_queue
        if left is not None and left.user_id is not None:
            self._service.job_left_queue(left.user_id, left.job_id)
        finished = record.finished_as
        if finished is not None:
            metrics.add_metric(
                name=metric_names.JOBS_BY_TERMINAL_STATUS[finished], unit=MetricUnit.Count, value=1
            )
        if not record.triggers_promotion or self._done:
            return
        report = self._service.promote()
        self._done = True
        for waited in report.waited_seconds.values():
            metrics.add_metric(name=metric_names.PROMOTION_DELAY, unit=MetricUnit.Seconds, value=waited)


@publish_metrics
@traced
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    processor = dynamodb_stream_processor(JobStreamRecord)
    batch = _BatchPromotion(build_service(load_settings(SETTINGS)))
    return process_partial_response(
        event=event, record_handler=batch.handle, processor=processor, context=context
    )
