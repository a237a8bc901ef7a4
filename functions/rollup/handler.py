"""Cost rollup: the CostTracking stream (NEW_IMAGE) → the Jobs item's progress, cost and budget.

Only INSERT records carry a new delta. MODIFY records are the rollup's own ``rolled_up_at`` write
and REMOVE records are TTL or cleanup deletions: both are skipped. A record whose delta does not
parse, or whose rollup fails, is reported alone in ``batchItemFailures``.

Metrics: ``RecordsGenerated`` and ``CostDollars`` for each delta applied (exactly once, like the
rollup itself: a replayed record is not counted again).
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
from functions.rollup.models import CostDeltaStreamRecord, CostRollupSettings, RollupOutcome
from functions.rollup.repository import CostRepository
from functions.rollup.service import CostRollupService

SETTINGS = CostRollupSettings


def build_service(settings: CostRollupSettings) -> CostRollupService:
    return CostRollupService(
        CostRepository(client("dynamodb"), settings.cost_tracking_table, settings.jobs_table)
    )


class _RecordHandler:
    def __init__(self, service: CostRollupService) -> None:
        self._service = service

    def handle(self, record: CostDeltaStreamRecord) -> None:
        delta = record.dynamodb.NewImage
        if record.eventName != "INSERT" or delta is None:
            return
        if self._service.roll_up(delta) is RollupOutcome.APPLIED:
            metrics.add_metric(
                name=metric_names.RECORDS_GENERATED, unit=MetricUnit.Count, value=delta.records
            )
            metrics.add_metric(name=metric_names.COST, unit=MetricUnit.NoUnit, value=float(delta.cost.total))


@publish_metrics
@traced
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    processor = dynamodb_stream_processor(CostDeltaStreamRecord)
    records = _RecordHandler(build_service(load_settings(SETTINGS)))
    return process_partial_response(
        event=event, record_handler=records.handle, processor=processor, context=context
    )
