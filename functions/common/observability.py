"""Logger, metrics and tracing shared by every function.

Logs are structured JSON; API handlers inject the correlation id from the request
(``correlation_paths.API_GATEWAY_HTTP``). Never log seed content or tokens.

Metrics are Powertools Metrics (EMF: a JSON line in the log, no API call); the names are in
``functions.common.metric_names``. ``publish_metrics`` flushes them after each invocation, and
only when something was recorded (the API's read routes record nothing).

Tracing: every function runs with Lambda active tracing (CDK ``Tracing.ACTIVE``), which records the
invocation's segment without the X-Ray SDK, and the state machines trace themselves. The SDK
(Powertools ``Tracer``, which patches botocore so each AWS call is a subsegment) costs about as much
to import as boto3 itself, so the API handlers, whose cold start a user waits for, do without it; the
stream consumers and the reconciler wrap their handler with ``traced``, which builds the ``Tracer``
on the first invocation (``benchmarks/cold_start.py`` measures the API handlers' import).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics

from functions.common.metric_names import NAMESPACE, SERVICE

METRICS_NAMESPACE = NAMESPACE

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)

HandlerT = TypeVar("HandlerT", bound=Callable[..., Any])


def publish_metrics(handler: HandlerT) -> HandlerT:
    """Flush the metrics recorded during the invocation as one EMF line (none: nothing is written)."""

    @functools.wraps(handler)
    def wrapper(event: Any, context: Any) -> Any:
        try:
            return handler(event, context)
        finally:
            if metrics.metric_set:
                metrics.flush_metrics()
            else:
                metrics.clear_metrics()

    return wrapper  # type: ignore[return-value]


@functools.cache
def tracer() -> Any:
    """The Powertools ``Tracer`` (X-Ray SDK, botocore patched), built once, on first use."""
    from aws_lambda_powertools import Tracer

    return Tracer(service=SERVICE, patch_modules=["botocore"])


def traced(handler: HandlerT) -> HandlerT:
    """``Tracer.capture_lambda_handler`` without importing the SDK before the first invocation."""
    captured: list[Callable[..., Any]] = []

    @functools.wraps(handler)
    def wrapper(event: Any, context: Any) -> Any:
        if not captured:
            captured.append(tracer().capture_lambda_handler(handler))
        return captured[0](event, context)

    return wrapper  # type: ignore[return-value]
