"""The batch processor every DynamoDB stream consumer uses (Powertools, partial batch responses)."""

from __future__ import annotations

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.parser.models import DynamoDBStreamRecordModel


def dynamodb_stream_processor(model: type[DynamoDBStreamRecordModel]) -> BatchProcessor:
    """A new processor for one invocation (it keeps per-batch state), parsing records as ``model``
    (a record model whose images are the table's item models); a record that does not parse fails.

    Every failed record is reported in ``batchItemFailures``, even when all of them failed, rather
    than raising: the answer keeps one shape, and Lambda retries all-failed and raised batches alike.
    """
    return BatchProcessor(
        event_type=EventType.DynamoDBStreams,
        model=model,
        raise_on_entire_batch_failure=False,
    )
