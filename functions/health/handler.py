"""GET /health: liveness, no authentication (the only route without the JWT authorizer)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from functions.common.api import build_resolver
from functions.common.observability import logger

router = APIGatewayHttpRouter()


class HealthResponse(BaseModel):
    status: str


@router.get("/health", tags=["health"], summary="Liveness check (no authentication)")
def health() -> HealthResponse:
    return HealthResponse(status="ok")


app = build_resolver(router)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
