"""Dashboard API: GET /dashboard/{job_id}. Routing and decorators only."""

from __future__ import annotations

# First: no collector passes while this module imports (functions/common/coldstart.py).
from functions.common import coldstart

# isort: split

from typing import Any

from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.common.api import api_responses, build_resolver, current_caller
from functions.common.aws import client
from functions.common.observability import logger
from functions.common.settings import JobsTableSettings, load_settings
from functions.dashboard.models import DashboardResponse
from functions.dashboard.service import DashboardService
from functions.jobs.access import JobAccess
from functions.jobs.repository import JobsRepository

SETTINGS = JobsTableSettings
router = APIGatewayHttpRouter()


def _service() -> DashboardService:
    settings = load_settings(SETTINGS)
    repository = JobsRepository(client("dynamodb"), settings.jobs_table)
    return DashboardService(jobs=JobAccess(repository))


@router.get(
    "/dashboard/<job_id>",
    tags=["dashboard"],
    summary="Progress, cost, budget and timing of one of your jobs",
    responses=api_responses(
        (200, "The dashboard"), e401="No JWT claims", e403="Another user's job", e404="Job not found"
    ),
    description="From the job's rolled-up fields: one DynamoDB read however many cost records exist.",
)
def get_dashboard(job_id: str) -> DashboardResponse:
    caller = current_caller(router)
    return _service().dashboard(caller.user_id, job_id)


app = build_resolver(router)
coldstart.imported()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
