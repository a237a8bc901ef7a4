"""The event capture behind ``plot-palette events``: a catch-all rule on the bus delivers every
event to an SQS queue, and ``EventDrain`` appends them to ``events.jsonl``. Not part of the stack."""

from __future__ import annotations

import json
import threading
from typing import Any

from local.runtime.state import RuntimeInfo

EVENTS_FILE = "events.jsonl"
CAPTURE_NAME = "plot-palette-local-event-capture"


def ensure_event_capture(info: RuntimeInfo) -> str:
    """The capture rule and queue (idempotent); returns the queue URL."""
    bus = info.environment["EVENT_BUS_NAME"]
    sqs, events = info.client("sqs"), info.client("events")
    queue_url = sqs.create_queue(QueueName=CAPTURE_NAME)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name=CAPTURE_NAME,
        EventBusName=bus,
        EventPattern=json.dumps({"source": [{"prefix": ""}]}),
        State="ENABLED",
        Description="plot-palette local runtime: every event, for `plot-palette events`",
    )
    events.put_targets(Rule=CAPTURE_NAME, EventBusName=bus, Targets=[{"Id": "capture", "Arn": queue_arn}])
    return str(queue_url)


class EventDrain(threading.Thread):
    """Moves captured events from the capture queue to events.jsonl (append-only, oldest first)."""

    def __init__(self, info: RuntimeInfo, queue_url: str) -> None:
        super().__init__(name="event-drain", daemon=True)
        self.info, self.queue_url = info, queue_url
        self.stopping = threading.Event()
        self.path = info.state_dir / EVENTS_FILE

    def run(self) -> None:
        sqs = self.info.client("sqs")
        while not self.stopping.is_set():
            try:
                messages = sqs.receive_message(
                    QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                ).get("Messages", [])
            except Exception:
                if self.stopping.wait(1):
                    return
                continue
            if messages:
                self._append(messages)
                sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
                    ],
                )

    def _append(self, messages: list[dict[str, Any]]) -> None:
        with open(self.path, "a") as sink:
            for message in messages:
                try:
                    event = json.loads(message["Body"])
                except ValueError:
                    event = {"raw": message["Body"]}
                sink.write(json.dumps(event, separators=(",", ":")) + "\n")

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)
