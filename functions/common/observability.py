"""Logger, tracer and metrics shared by every function.

Logs are structured JSON; API handlers inject the correlation id from the request
(``correlation_paths.API_GATEWAY_HTTP``). Never log seed content or tokens.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "plot-palette"
METRICS_NAMESPACE = "PlotPalette"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)
