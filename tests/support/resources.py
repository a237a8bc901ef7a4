"""The AWS resources of docs/data-model.md as boto3 calls, for moto and MiniStack fixtures.

The CDK app defines the same tables for real deployments; tests/infra checks the two agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from functions.common import settings as s


def _attrs(**types: str) -> list[dict[str, str]]:
    return [{"AttributeName": name, "AttributeType": kind} for name, kind in types.items()]


def _key(pk: str, sk: str | None = None) -> list[dict[str, str]]:
    key = [{"AttributeName": pk, "KeyType": "HASH"}]
    if sk:
        key.append({"AttributeName": sk, "KeyType": "RANGE"})
    return key


def _gsi(name: str, pk: str, sk: str, projection: str = "ALL") -> dict[str, Any]:
    return {"IndexName": name, "KeySchema": _key(pk, sk), "Projection": {"ProjectionType": projection}}


def table_definitions(
    jobs: str = s.JobsTableSettings().jobs_table,
    queue: str = s.QueueTableSettings().queue_table,
    templates: str = s.TemplatesTableSettings().templates_table,
    cost_tracking: str = s.CostTrackingTableSettings().cost_tracking_table,
    idempotency: str = s.IdempotencyTableSettings().idempotency_table,
) -> list[dict[str, Any]]:
    """CreateTable arguments for every table, on-demand billing."""
    return [
        {
            "TableName": jobs,
            "KeySchema": _key("job_id"),
            "AttributeDefinitions": _attrs(job_id="S", user_id="S", created_at="S", user_status="S"),
            "GlobalSecondaryIndexes": [
                _gsi("user-id-index", "user_id", "created_at"),
                _gsi("user-status-index", "user_status", "created_at"),
            ],
            "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        },
        {
            "TableName": queue,
            "KeySchema": _key("status", "queue_key"),
            "AttributeDefinitions": _attrs(status="S", queue_key="S"),
        },
        {
            "TableName": templates,
            "KeySchema": _key("template_id", "version"),
            "AttributeDefinitions": _attrs(
                template_id="S",
                version="N",
                owner_id="S",
                public_partition="S",
                updated_at="S",
                popularity="N",
                name_key="S",
            ),
            "GlobalSecondaryIndexes": [
                _gsi("user-templates-index", "owner_id", "updated_at"),
                _gsi("public-templates-index", "public_partition", "updated_at"),
                _gsi("public-popular-index", "public_partition", "popularity"),
                _gsi("public-name-index", "public_partition", "name_key"),
            ],
        },
        {
            "TableName": cost_tracking,
            "KeySchema": _key("job_id", "record_id"),
            "AttributeDefinitions": _attrs(job_id="S", record_id="S"),
            "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        },
        {
            "TableName": idempotency,
            "KeySchema": _key("id"),
            "AttributeDefinitions": _attrs(id="S"),
        },
    ]


@dataclass
class EventCapture:
    """An SQS queue subscribed to everything on the bus: the events a test can read back."""

    sqs: Any
    queue_url: str

    def drain(self, wait_seconds: int = 0) -> list[dict[str, Any]]:
        """Every event delivered so far, as EventBridge envelopes, in arrival order."""
        events: list[dict[str, Any]] = []
        while True:
            answer = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds
            )
            messages = answer.get("Messages", [])
            if not messages:
                return events
            for message in messages:
                events.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])


def create_resources(
    session: Any,
    bucket: str = s.BucketSettings().bucket_name,
    bus: str = s.EventBusSettings().event_bus_name,
    region: str = "us-east-1",
    **table_names: str,
) -> EventCapture:
    """Create tables, bucket, bus and an event-capturing queue; return the capture."""
    dynamodb = session.client("dynamodb")
    for definition in table_definitions(**table_names):
        dynamodb.create_table(BillingMode="PAY_PER_REQUEST", **definition)
    s3 = session.client("s3")
    if region == "us-east-1":
        s3.create_bucket(Bucket=bucket)
    else:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    events = session.client("events")
    events.create_event_bus(Name=bus)
    sqs = session.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"{bus}-event-capture")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name="capture-all",
        EventBusName=bus,
        EventPattern=json.dumps({"source": [{"prefix": "plot-palette"}]}),
    )
    events.put_targets(Rule="capture-all", EventBusName=bus, Targets=[{"Id": "capture", "Arn": queue_arn}])
    return EventCapture(sqs=sqs, queue_url=queue_url)
