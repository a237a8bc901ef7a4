"""``EventPublisher``: puts one domain event (``functions.common.events``) on the bus.

Apart from the event models so that a Lambda builds its publisher without importing every detail
model: a route imports the detail it publishes, and the routes that publish nothing skip them all
(benchmarks/cold_start.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from functions.common.events import EventDetail


class EventPublishError(Exception):
    """EventBridge refused an entry (it answers 200 with FailedEntryCount > 0)."""


class EventPublisher:
    def __init__(self, events_client: Any, bus_name: str) -> None:
        self._events = events_client
        self._bus_name = bus_name

    def publish(self, detail: EventDetail) -> None:
        entry = {
            "EventBusName": self._bus_name,
            "Source": detail.source,
            "DetailType": detail.detail_type,
            "Detail": detail.model_dump_json(),
        }
        answer = self._events.put_events(Entries=[entry])
        if answer.get("FailedEntryCount", 0):
            failure = answer["Entries"][0]
            raise EventPublishError(f"{failure.get('ErrorCode')}: {failure.get('ErrorMessage')}")
