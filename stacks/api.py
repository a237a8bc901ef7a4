"""Auth and API: the Cognito user pool (created or imported), the HTTP API, its routes and Lambdas."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk.aws_apigatewayv2_authorizers import HttpUserPoolAuthorizer
from aws_cdk.aws_apigatewayv2_integrations import HttpLambdaIntegration
from constructs import Construct

from functions.common.api import API_DOMAINS, PUBLIC_PATHS, served_routes
from stacks.config import Config
from stacks.lambdas import LOG_RETENTION, PythonFunction, handler_module
from stacks.storage import Storage
from stacks.worker import bedrock_invoke_statement

ACCESS_LOG_FORMAT = (
    '{"requestId":"$context.requestId","ip":"$context.identity.sourceIp",'
    '"requestTime":"$context.requestTime","httpMethod":"$context.httpMethod",'
    '"routeKey":"$context.routeKey","status":"$context.status","protocol":"$context.protocol",'
    '"responseLength":"$context.responseLength","integrationError":"$context.integrationErrorMessage",'
    '"authorizerError":"$context.authorizer.error","sub":"$context.authorizer.claims.sub"}'
)


@dataclass(frozen=True)
class ApiEnvironment:
    code: lambda_.Code
    layers: list[lambda_.ILayerVersion]
    bus_name: str


class Auth(Construct):
    """The user pool and the web client: created here, or imported with context values."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Config) -> None:
        super().__init__(scope, construct_id)
        self.created = config.user_pool_id is None
        if config.user_pool_id and config.user_pool_client_id:
            self.user_pool: cognito.IUserPool = cognito.UserPool.from_user_pool_id(
                self, "ImportedUserPool", config.user_pool_id
            )
            self.client: cognito.IUserPoolClient = cognito.UserPoolClient.from_user_pool_client_id(
                self, "ImportedClient", config.user_pool_client_id
            )
            return
        pool = cognito.UserPool(
            self,
            "UserPool",
            user_pool_name=config.names.user_pool,
            self_sign_up_enabled=True,
            sign_in_aliases=cognito.SignInAliases(email=True),
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            password_policy=cognito.PasswordPolicy(
                min_length=12,
                require_digits=True,
                require_lowercase=True,
                require_uppercase=True,
                require_symbols=True,
            ),
            mfa=cognito.Mfa.OPTIONAL,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            deletion_protection=not config.is_local,
            removal_policy=RemovalPolicy.DESTROY if config.is_local else RemovalPolicy.RETAIN,
        )
        self.user_pool = pool
        self.client = pool.add_client(
            "WebClient",
            user_pool_client_name=config.names.user_pool_client,
            auth_flows=cognito.AuthFlow(user_password=True, user_srp=True),
            generate_secret=False,
            prevent_user_existence_errors=True,
            access_token_validity=Duration.hours(1),
            id_token_validity=Duration.hours(1),
            refresh_token_validity=Duration.days(30),
        )


class Api(Construct):
    """The HTTP API: JWT authorizer on every route but the public ones (health, docs), throttling, logs."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        auth: Auth,
        storage: Storage,
        env: ApiEnvironment,
    ) -> None:
        super().__init__(scope, construct_id)
        names = config.names
        resources = storage.resources | {
            "EVENT_BUS_NAME": env.bus_name,
            "UPLOAD_MAX_BYTES": str(100 * 1024 * 1024),
            # The dry run (templates) renders and calls models as the worker does.
            "MODEL_PROVIDER": "offline" if config.is_local else "bedrock",
            # ... and estimates a job's duration with the lifecycle's partitioning.
            "PARTITION_RECORDS": str(config.partition_records),
            "PARTITION_CONCURRENCY": str(config.partition_concurrency),
            "MAX_QUEUED_JOBS_PER_USER": str(config.max_queued_jobs_per_user),
            "MAX_JOBS_CREATED_PER_MINUTE": str(config.max_jobs_created_per_minute),
        }
        self.functions: dict[str, PythonFunction] = {
            domain: PythonFunction(
                self,
                domain.title().replace("_", ""),
                config=config,
                domain=domain,
                code=env.code,
                layers=env.layers,
                resources=resources,
                description=f"plot-palette {domain} API",
            )
            for domain in API_DOMAINS
        }

        self.authorizer = HttpUserPoolAuthorizer(
            "JwtAuthorizer",
            auth.user_pool,
            user_pool_clients=[auth.client],
            authorizer_name="cognito-jwt",
        )
        self.http_api = apigw.HttpApi(
            self,
            "HttpApi",
            api_name=names.http_api,
            description="plot-palette REST API",
            create_default_stage=False,
            cors_preflight=apigw.CorsPreflightOptions(
                allow_origins=config.allowed_origins,
                allow_methods=[apigw.CorsHttpMethod.ANY],
                allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
                max_age=Duration.hours(1),
            ),
        )
        self.access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            log_group_name=names.log_group("api", "access"),
            retention=LOG_RETENTION,
            removal_policy=RemovalPolicy.DESTROY if config.is_local else RemovalPolicy.RETAIN,
        )
        self.stage = self.http_api.add_stage(
            "DefaultStage",
            stage_name="$default",
            auto_deploy=True,
            # Per-route 4xx/5xx/latency for the dashboard (billed as custom metrics; context
            # api_route_metrics=false turns it off). MiniStack has no CloudWatch behind it.
            detailed_metrics_enabled=config.api_route_metrics and not config.is_local,
            throttle=apigw.ThrottleSettings(
                rate_limit=config.throttle_rate_limit, burst_limit=config.throttle_burst_limit
            ),
        )
        cfn_stage = self.stage.node.default_child
        assert isinstance(cfn_stage, apigw.CfnStage)
        cfn_stage.access_log_settings = apigw.CfnStage.AccessLogSettingsProperty(
            destination_arn=self.access_logs.log_group_arn, format=ACCESS_LOG_FORMAT
        )

        # Exactly the routes each handler's resolver serves.
        for domain in API_DOMAINS:
            integration = HttpLambdaIntegration(f"{domain}-integration", self.functions[domain].function)
            for method, path in served_routes(handler_module(domain).app):
                self.http_api.add_routes(
                    path=path,
                    methods=[apigw.HttpMethod(method)],
                    integration=integration,
                    authorizer=None if path in PUBLIC_PATHS else self.authorizer,
                )

        self._local = config.is_local
        self._grant(storage, env.bus_name)

    @property
    def url(self) -> str:
        url = self.stage.url
        assert url is not None
        return url

    def _grant(self, storage: Storage, bus_name: str) -> None:
        f = {domain: fn.function for domain, fn in self.functions.items()}
        # jobs: the create transaction (Jobs + Queue + template ConditionCheck), listing, cancel and
        # delete requests (events), idempotency records, presigned download URLs of job outputs.
        storage.jobs.grant_read_write_data(f["jobs"])
        storage.queue.grant_read_write_data(f["jobs"])
        storage.templates.grant_read_data(f["jobs"])
        # The create transaction adds 1 to the template head's job_refs (authorized per item action).
        storage.grant_items(storage.templates, f["jobs"], "dynamodb:UpdateItem")
        storage.idempotency.grant_read_write_data(f["jobs"])
        storage.grant_objects(f["jobs"], "jobs/", "s3:GetObject")
        storage.grant_objects(f["jobs"], "seed-data/", "s3:GetObject")
        storage.grant_list(f["jobs"])  # HeadObject of a missing seed file answers 404
        # templates: immutable versions and head items; "in use" is the head's job_refs counter.
        storage.templates.grant_read_write_data(f["templates"])
        # the dry run: reads the caller's seed file, counts its rate limit (UpdateItem in a
        # transaction on the short-lived records table) and calls Bedrock in AWS.
        storage.grant_objects(f["templates"], "seed-data/", "s3:GetObject")
        storage.grant_list(f["templates"])  # GetObject of a missing seed file answers 404
        storage.grant_items(storage.idempotency, f["templates"], "dynamodb:UpdateItem")
        if not self._local:
            f["templates"].add_to_role_policy(bedrock_invoke_statement())
        # seed data: presigned uploads under seed-data/ and validation reads.
        storage.grant_objects(f["seed_data"], "seed-data/", "s3:PutObject", "s3:GetObject")
        storage.grant_list(f["seed_data"])  # GetObject of a missing upload answers 404
        storage.templates.grant_read_data(f["seed_data"])
        # dashboard: the rolled-up job item.
        storage.jobs.grant_read_data(f["dashboard"])
        # the domains that emit events (functions.common.events).
        self.publishers = [f["jobs"], f["templates"]]
