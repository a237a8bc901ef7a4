"""Storage: the DynamoDB tables and the S3 bucket of docs/data-model.md."""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as ddb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.config import Config

S = ddb.AttributeType.STRING
N = ddb.AttributeType.NUMBER


def _attr(name: str, kind: ddb.AttributeType = S) -> ddb.Attribute:
    return ddb.Attribute(name=name, type=kind)


class Storage(Construct):
    """Jobs, Queue, Templates, CostTracking, Idempotency and the data bucket."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Config) -> None:
        super().__init__(scope, construct_id)
        names = config.names
        removal = RemovalPolicy.DESTROY if config.is_local else RemovalPolicy.RETAIN

        def table(
            cid: str,
            name: str,
            pk: str,
            sk: ddb.Attribute | None = None,
            stream: ddb.StreamViewType | None = None,
            ttl: str | None = None,
        ) -> ddb.Table:
            return ddb.Table(
                self,
                cid,
                table_name=name,
                partition_key=_attr(pk),
                sort_key=sk,
                billing_mode=ddb.BillingMode.PAY_PER_REQUEST,
                point_in_time_recovery_specification=ddb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=True
                ),
                stream=stream,
                time_to_live_attribute=ttl,
                encryption=ddb.TableEncryption.AWS_MANAGED,
                removal_policy=removal,
            )

        self.jobs = table("Jobs", names.jobs_table, "job_id", stream=ddb.StreamViewType.NEW_AND_OLD_IMAGES)
        self.jobs.add_global_secondary_index(
            index_name="user-id-index", partition_key=_attr("user_id"), sort_key=_attr("created_at")
        )
        self.jobs.add_global_secondary_index(
            index_name="user-status-index", partition_key=_attr("user_status"), sort_key=_attr("created_at")
        )

        self.queue = table("Queue", names.queue_table, "status", sk=_attr("queue_key"))

        self.templates = table("Templates", names.templates_table, "template_id", sk=_attr("version", N))
        self.templates.add_global_secondary_index(
            index_name="user-templates-index", partition_key=_attr("owner_id"), sort_key=_attr("updated_at")
        )
        self.templates.add_global_secondary_index(
            index_name="public-templates-index",
            partition_key=_attr("public_partition"),
            sort_key=_attr("updated_at"),
        )
        # The marketplace's other orders (GET /templates/marketplace?sort=popular|name). A stack
        # deployed before them adds one per deployment (context marketplace_indexes, docs/deploy.md).
        marketplace = [
            ("public-popular-index", _attr("popularity", N)),
            ("public-name-index", _attr("name_key")),
        ]
        for index_name, sort_key in marketplace[: config.marketplace_indexes]:
            self.templates.add_global_secondary_index(
                index_name=index_name, partition_key=_attr("public_partition"), sort_key=sort_key
            )

        self.cost_tracking = table(
            "CostTracking",
            names.cost_tracking_table,
            "job_id",
            sk=_attr("record_id"),
            stream=ddb.StreamViewType.NEW_IMAGE,
            ttl="ttl",
        )
        self.idempotency = table("Idempotency", names.idempotency_table, "id", ttl="expiration")

        # Server access logs in AWS (S3 charges only for the log objects); the emulator has none.
        self.access_logs: s3.Bucket | None = None
        if not config.is_local:
            self.access_logs = s3.Bucket(
                self,
                "AccessLogs",
                encryption=s3.BucketEncryption.S3_MANAGED,
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                enforce_ssl=True,
                object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
                removal_policy=removal,
                lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(90))],
            )
        self.bucket = s3.Bucket(
            self,
            "Data",
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="data/" if self.access_logs else None,
            bucket_name=names.bucket(Aws.ACCOUNT_ID, Aws.REGION),
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=False,
            removal_policy=removal,
            cors=[
                s3.CorsRule(
                    # Browsers upload seed data straight to S3 with presigned PUT URLs / POST policies.
                    allowed_methods=[s3.HttpMethods.PUT, s3.HttpMethods.POST, s3.HttpMethods.GET],
                    allowed_origins=config.allowed_origins,
                    allowed_headers=["*"],
                    exposed_headers=["ETag"],
                    max_age=3000,
                )
            ],
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="abort-incomplete-uploads",
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
                s3.LifecycleRule(
                    id="job-outputs",
                    prefix="jobs/",
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INTELLIGENT_TIERING,
                            transition_after=Duration.days(30),
                        )
                    ],
                ),
                s3.LifecycleRule(
                    id="seed-data",
                    prefix="seed-data/",
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=Duration.days(90),
                        )
                    ],
                ),
            ],
        )

    @property
    def resources(self) -> dict[str, str]:
        """The storage names as the functions' settings read them (functions/common/settings.py)."""
        return {
            "JOBS_TABLE": self.jobs.table_name,
            "QUEUE_TABLE": self.queue.table_name,
            "TEMPLATES_TABLE": self.templates.table_name,
            "COST_TRACKING_TABLE": self.cost_tracking.table_name,
            "IDEMPOTENCY_TABLE": self.idempotency.table_name,
            "BUCKET_NAME": self.bucket.bucket_name,
        }

    def grant_objects(self, grantee: iam.IGrantable, prefix: str, *actions: str) -> iam.Grant:
        """Exact S3 object actions on the keys under ``prefix`` (CDK's bucket grants use ``s3:Get*``-style
        wildcard actions, which this app does not allow)."""
        return iam.Grant.add_to_principal(
            grantee=grantee, actions=list(actions), resource_arns=[self.bucket.arn_for_objects(f"{prefix}*")]
        )

    def grant_list(self, grantee: iam.IGrantable, prefix: str | None = None) -> None:
        """``s3:ListBucket``, limited to keys under ``prefix`` when given.

        Without a prefix condition: S3 answers a GetObject/HeadObject of a missing key with 404 only to a
        caller allowed to list the bucket (403 otherwise), and that request carries no ``s3:prefix``,
        so code that needs "not found" gets the bucket-wide permission (key names only, no content).
        """
        conditions = {"StringLike": {"s3:prefix": [f"{prefix}*"]}} if prefix else None
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"], resources=[self.bucket.bucket_arn], conditions=conditions
            )
        )

    @staticmethod
    def grant_items(table: ddb.ITable, grantee: iam.IGrantable, *actions: str) -> iam.Grant:
        """Exact item actions on the table itself, not its indexes (``Table.grant`` adds ``index/*``)."""
        return iam.Grant.add_to_principal(
            grantee=grantee, actions=list(actions), resource_arns=[table.table_arn]
        )
