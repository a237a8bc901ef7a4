"""Storage: the CDK tables are the tables of docs/data-model.md (as tests/support/resources.py builds
them for moto and MiniStack), and the bucket is private, encrypted, SSL-only, with CORS and lifecycle."""

from __future__ import annotations

from typing import Any

import pytest

from stacks.names import Names, Stage
from tests.infra.conftest import Synthesized
from tests.support.resources import table_definitions

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


def _definitions(names: Names) -> list[dict[str, Any]]:
    return table_definitions(
        jobs=names.jobs_table,
        queue=names.queue_table,
        templates=names.templates_table,
        cost_tracking=names.cost_tracking_table,
        idempotency=names.idempotency_table,
    )


def _gsis(indexes: list[dict[str, Any]]) -> dict[str, tuple[Any, Any]]:
    return {
        index["IndexName"]: (index["KeySchema"], index["Projection"]["ProjectionType"]) for index in indexes
    }


def test_local_names_are_prefixed_apart_from_prod(local: Synthesized, prod: Synthesized) -> None:
    assert local.names.prefix == "plot-palette-local"
    local_tables = {r["Properties"]["TableName"] for r in local.of_type("AWS::DynamoDB::Table").values()}
    prod_tables = {r["Properties"]["TableName"] for r in prod.of_type("AWS::DynamoDB::Table").values()}
    assert local_tables.isdisjoint(prod_tables)


def test_tables_match_the_data_model_definitions(each: Synthesized) -> None:
    definitions = _definitions(each.names)
    tables = each.of_type("AWS::DynamoDB::Table")
    assert len(tables) == len(definitions)
    for expected in definitions:
        _, table = each.one("AWS::DynamoDB::Table", TableName=expected["TableName"])
        props = table["Properties"]
        assert props["KeySchema"] == expected["KeySchema"], expected["TableName"]
        assert sorted(props["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == sorted(
            expected["AttributeDefinitions"], key=lambda a: a["AttributeName"]
        ), expected["TableName"]
        assert _gsis(props.get("GlobalSecondaryIndexes", [])) == _gsis(
            expected.get("GlobalSecondaryIndexes", [])
        ), expected["TableName"]
        expected_stream = expected.get("StreamSpecification")
        actual_stream = props.get("StreamSpecification")
        if expected_stream:
            assert actual_stream == {"StreamViewType": expected_stream["StreamViewType"]}
        else:
            assert actual_stream is None, expected["TableName"]


def test_tables_are_on_demand_with_point_in_time_recovery(each: Synthesized) -> None:
    for lid, table in each.of_type("AWS::DynamoDB::Table").items():
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST", lid
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True, lid


@pytest.mark.parametrize(
    ("table", "attribute"), [("cost_tracking_table", "ttl"), ("idempotency_table", "expiration")]
)
def test_ttl_attributes(each: Synthesized, table: str, attribute: str) -> None:
    _, resource = each.one("AWS::DynamoDB::Table", TableName=getattr(each.names, table))
    assert resource["Properties"]["TimeToLiveSpecification"] == {"AttributeName": attribute, "Enabled": True}


def test_tables_and_bucket_are_retained_in_prod_and_destroyed_locally(each: Synthesized) -> None:
    expected = "Retain" if each.stage is Stage.PROD else "Delete"
    for kind in ("AWS::DynamoDB::Table", "AWS::S3::Bucket"):
        for lid, resource in each.of_type(kind).items():
            assert resource.get("DeletionPolicy", "Delete") == expected, lid


def _data_bucket(each: Synthesized) -> tuple[str, dict[str, Any]]:
    buckets = {lid: r for lid, r in each.of_type("AWS::S3::Bucket").items() if lid.startswith("StorageData")}
    assert len(buckets) == 1
    return next(iter(buckets.items()))


def test_bucket_is_encrypted_private_and_ssl_only(each: Synthesized) -> None:
    lid, bucket = _data_bucket(each)
    props = bucket["Properties"]
    rules = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rules[0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    _, policy = each.one("AWS::S3::BucketPolicy", Bucket={"Ref": lid})
    denies = [
        s
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert denies
    assert denies[0]["Action"] == "s3:*"


def test_bucket_cors_allows_browser_uploads(each: Synthesized) -> None:
    _, bucket = _data_bucket(each)
    (rule,) = bucket["Properties"]["CorsConfiguration"]["CorsRules"]
    assert {"PUT", "POST"} <= set(rule["AllowedMethods"])
    assert rule["AllowedOrigins"]
    assert "ETag" in rule["ExposedHeaders"]


def test_bucket_lifecycle_covers_jobs_and_seed_data(each: Synthesized) -> None:
    _, bucket = _data_bucket(each)
    rules = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
    prefixes = {rule.get("Prefix") for rule in rules if rule["Status"] == "Enabled"}
    assert {"jobs/", "seed-data/"} <= prefixes
    assert any("AbortIncompleteMultipartUpload" in rule for rule in rules)


def test_prod_bucket_name_is_unique_per_account_and_region(prod: Synthesized) -> None:
    _, bucket = _data_bucket(prod)
    name = bucket["Properties"]["BucketName"]
    assert name == {
        "Fn::Join": ["", ["plot-palette-data-", {"Ref": "AWS::AccountId"}, "-", {"Ref": "AWS::Region"}]]
    }
