"""Auth and API: routes, the JWT authorizer on every route but GET /health, throttling, access logs,
and each API Lambda's handler, runtime and settings."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import pytest

from benchmarks.cold_start import ENVIRONMENT as COLD_START_ENVIRONMENT
from functions.common import settings
from functions.common.api import API_DOMAINS, PUBLIC_PATHS, served_routes
from functions.promoter.models import FairShareSettings
from functions.reconciler.models import ReconcilerSettings
from functions.templates.product_handler import DryRunSettings
from stacks.bundling import ROOT
from stacks.lambdas import BASE_ENVIRONMENT, handler_module
from tests.infra.conftest import Synthesized, ref

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

# Every environment variable a settings mixin of functions/common/settings.py reads.
# What every function gets besides its settings (the local stage adds POWERTOOLS_TRACE_DISABLED).
RUNTIME_VARIABLES = {*BASE_ENVIRONMENT, "POWERTOOLS_TRACE_DISABLED"}
KNOWN_SETTINGS = {
    field.validation_alias
    for model in (
        settings.JobsTableSettings,
        settings.QueueTableSettings,
        settings.TemplatesTableSettings,
        settings.CostTrackingTableSettings,
        settings.IdempotencyTableSettings,
        settings.BucketSettings,
        settings.EventBusSettings,
        settings.UploadSettings,
        settings.ConcurrencySettings,
        settings.LifecycleSettings,
        # The dry run reads the worker's model and task settings (functions/templates/product_handler.py).
        DryRunSettings,
        settings.JobQuotaSettings,
        FairShareSettings,
        ReconcilerSettings,
    )
    for field in model.model_fields.values()
}


def _function_by_handler(each: Synthesized, domain: str) -> tuple[str, dict[str, Any]]:
    return each.one("AWS::Lambda::Function", Handler=f"functions.{domain}.handler.lambda_handler")


def _integration_function(each: Synthesized, integration_id: str) -> str:
    uri = each.resources[integration_id]["Properties"]["IntegrationUri"]
    return uri["Fn::GetAtt"][0]


def _deployed_routes(each: Synthesized) -> dict[str, str]:
    """Route key -> the logical id of the function it reaches."""
    deployed = {}
    for route in each.of_type("AWS::ApiGatewayV2::Route").values():
        target = route["Properties"]["Target"]["Fn::Join"][1][1]["Ref"]
        deployed[route["Properties"]["RouteKey"]] = _integration_function(each, target)
    return deployed


def test_the_deployed_routes_are_exactly_the_routers_routes(each: Synthesized) -> None:
    """API Gateway and the Powertools resolver of each handler agree route for route."""
    expected = {}
    for domain in API_DOMAINS:
        function_id, _ = _function_by_handler(each, domain)
        for method, path in served_routes(handler_module(domain).app):
            expected[f"{method} {path}"] = function_id
    assert _deployed_routes(each) == expected
    assert {"POST /jobs", "GET /jobs/{job_id}", "GET /health"} <= set(expected)  # found at all


def test_jwt_authorizer_on_every_route_but_health(each: Synthesized) -> None:
    authorizer_id, authorizer = each.one("AWS::ApiGatewayV2::Authorizer")
    assert authorizer["Properties"]["AuthorizerType"] == "JWT"
    assert authorizer["Properties"]["IdentitySource"] == ["$request.header.Authorization"]
    for route in each.of_type("AWS::ApiGatewayV2::Route").values():
        props = route["Properties"]
        if props["RouteKey"].split(" ")[1] in PUBLIC_PATHS:
            assert props.get("AuthorizationType", "NONE") == "NONE"
            assert "AuthorizerId" not in props
        else:
            assert props["AuthorizationType"] == "JWT", props["RouteKey"]
            assert props["AuthorizerId"] == ref(authorizer_id), props["RouteKey"]


def test_authorizer_trusts_the_stack_user_pool_and_its_client(each: Synthesized) -> None:
    _, authorizer = each.one("AWS::ApiGatewayV2::Authorizer")
    pool_id = each.logical_id("AWS::Cognito::UserPool")
    client_id = each.logical_id("AWS::Cognito::UserPoolClient")
    jwt = authorizer["Properties"]["JwtConfiguration"]
    assert jwt["Audience"] == [ref(client_id)]
    issuer_parts = jwt["Issuer"]["Fn::Join"][1]
    assert issuer_parts[0] == "https://cognito-idp."
    assert ref(pool_id) in issuer_parts


def test_user_pool_client_allows_password_and_srp_sign_in(each: Synthesized) -> None:
    _, client = each.one("AWS::Cognito::UserPoolClient")
    flows = set(client["Properties"]["ExplicitAuthFlows"])
    assert {"ALLOW_USER_PASSWORD_AUTH", "ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"} <= flows
    assert client["Properties"]["GenerateSecret"] is False


def test_users_may_sign_up_as_the_black_box_suite_does(each: Synthesized) -> None:
    """tests/blackbox signs up throwaway users with sign_up (no client secret) on any deployment."""
    _, pool = each.one("AWS::Cognito::UserPool")
    assert pool["Properties"]["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is False


def test_default_stage_is_throttled_and_logged(each: Synthesized) -> None:
    _, stage = each.one("AWS::ApiGatewayV2::Stage", StageName="$default")
    props = stage["Properties"]
    assert props["AutoDeploy"] is True
    throttle = props["DefaultRouteSettings"]
    assert throttle["ThrottlingRateLimit"] == 50
    assert throttle["ThrottlingBurstLimit"] == 100
    log_group = props["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"][0]
    assert each.resources[log_group]["Type"] == "AWS::Logs::LogGroup"
    assert "$context.requestId" in props["AccessLogSettings"]["Format"]


def test_handlers_are_importable_modules_of_the_package(each: Synthesized) -> None:
    handlers = {r["Properties"]["Handler"] for r in each.of_type("AWS::Lambda::Function").values()}
    assert handlers == {
        f"functions.{domain}.handler.lambda_handler"
        for domain in [*API_DOMAINS, "promoter", "rollup", "reconciler"]
    }
    for handler in handlers:
        module = handler.rsplit(".", 1)[0]
        assert importlib.util.find_spec(module) is not None, f"{module} is not in the functions package"


def test_functions_and_worker_run_the_python_the_tests_run_on_with_their_own_log_group(
    each: Synthesized,
) -> None:
    tested = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f"FROM python:{tested}-slim" in (ROOT / "Dockerfile").read_text()
    for lid, function in each.of_type("AWS::Lambda::Function").items():
        props = function["Properties"]
        assert props["Runtime"] == f"python{tested}", lid
        log_group = props["LoggingConfig"]["LogGroup"]["Ref"]
        assert each.resources[log_group]["Properties"]["RetentionInDays"] == 30


def test_function_settings_are_known_and_point_at_the_right_resources(each: Synthesized) -> None:
    table_ids = {
        "JOBS_TABLE": each.logical_id("AWS::DynamoDB::Table", TableName=each.names.jobs_table),
        "QUEUE_TABLE": each.logical_id("AWS::DynamoDB::Table", TableName=each.names.queue_table),
        "TEMPLATES_TABLE": each.logical_id("AWS::DynamoDB::Table", TableName=each.names.templates_table),
        "COST_TRACKING_TABLE": each.logical_id(
            "AWS::DynamoDB::Table", TableName=each.names.cost_tracking_table
        ),
        "IDEMPOTENCY_TABLE": each.logical_id("AWS::DynamoDB::Table", TableName=each.names.idempotency_table),
        "EVENT_BUS_NAME": each.logical_id("AWS::Events::EventBus", Name=each.names.event_bus),
    }
    bucket_id = next(lid for lid in each.of_type("AWS::S3::Bucket") if lid.startswith("StorageData"))
    for lid, function in each.of_type("AWS::Lambda::Function").items():
        variables = function["Properties"]["Environment"]["Variables"]
        app_settings = {k: v for k, v in variables.items() if k not in RUNTIME_VARIABLES}
        assert set(app_settings) <= KNOWN_SETTINGS, (lid, set(app_settings) - KNOWN_SETTINGS)
        for key, value in app_settings.items():
            if key in table_ids:
                assert value == ref(table_ids[key]), (lid, key)
            elif key == "BUCKET_NAME":
                assert value == ref(bucket_id), lid
        # Literal settings must pass the settings models' validation.
        literal = {k: v for k, v in app_settings.items() if isinstance(v, str)}
        if "UPLOAD_MAX_BYTES" in literal:
            assert settings.UploadSettings(UPLOAD_MAX_BYTES=literal["UPLOAD_MAX_BYTES"]).upload_max_bytes > 0  # type: ignore[call-arg]
        if "MAX_RUNNING_JOBS" in literal:
            parsed = settings.ConcurrencySettings(MAX_RUNNING_JOBS=literal["MAX_RUNNING_JOBS"])  # type: ignore[call-arg]
            assert parsed.max_running_jobs == 5


def test_api_gateway_may_invoke_each_api_function(each: Synthesized) -> None:
    permitted = {
        p["Properties"]["FunctionName"]["Fn::GetAtt"][0]
        for p in each.of_type("AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "apigateway.amazonaws.com"
    }
    for domain in API_DOMAINS:
        function_id, _ = _function_by_handler(each, domain)
        assert function_id in permitted, domain


def test_outputs(each: Synthesized) -> None:
    outputs = each.template["Outputs"]
    for name in ("ApiEndpoint", "UserPoolId", "UserPoolClientId", "BucketName", "EventBusName"):
        assert name in outputs
    assert outputs["UserPoolId"]["Value"] == ref(each.logical_id("AWS::Cognito::UserPool"))
    assert outputs["EventBusName"]["Value"] == ref(each.logical_id("AWS::Events::EventBus"))


@pytest.mark.parametrize("domain", [*API_DOMAINS, "promoter", "rollup", "reconciler"])
def test_each_function_gets_exactly_the_settings_its_handler_reads(each: Synthesized, domain: str) -> None:
    """Every field without a default is set, nothing else than the settings fields, and it validates."""
    _, function = _function_by_handler(each, domain)
    variables = function["Properties"]["Environment"]["Variables"]
    passed = {k for k in variables if k not in RUNTIME_VARIABLES}
    model = handler_module(domain).SETTINGS
    if model is None:
        assert passed == set()
        return
    fields = model.model_fields.values()
    required = {f.validation_alias for f in fields if f.is_required()}
    assert required <= passed, f"required settings not set: {required - passed}"
    assert passed <= {f.validation_alias for f in fields}, "settings the handler never reads"
    values = {
        k: v if isinstance(v, str) else "resolved-at-deploy" for k, v in variables.items() if k in passed
    }
    model(**values)  # raises pydantic.ValidationError on an invalid value


def test_every_function_runs_with_the_environment_the_cold_start_bench_measures(each: Synthesized) -> None:
    assert BASE_ENVIRONMENT.items() <= COLD_START_ENVIRONMENT.items()
    for lid, function in each.of_type("AWS::Lambda::Function").items():
        variables = function["Properties"]["Environment"]["Variables"]
        assert BASE_ENVIRONMENT.items() <= variables.items(), lid
