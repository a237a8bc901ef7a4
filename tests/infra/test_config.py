"""Context values: parsing (CLI context arrives as strings) and importing an existing user pool."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from stacks.config import Config
from stacks.names import Stage

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


def _config(**context: Any) -> Config:
    return Config.from_context(cdk.App(context=context).node)


def test_defaults_are_the_prod_stage() -> None:
    config = _config()
    assert config.stage is Stage.PROD
    assert config.names.prefix == "plot-palette"
    assert config.max_running_jobs == 5
    assert config.worker_max_tasks == 5
    assert config.allowed_origins == ["*"]


def test_cli_strings_are_parsed() -> None:
    config = _config(
        stage="local",
        max_running_jobs="12",
        allowed_origins="https://a.example, https://b.example",
        prefix="pp-test",
    )
    assert config.stage is Stage.LOCAL
    assert config.names.jobs_table == "pp-test-Jobs"
    assert config.max_running_jobs == 12
    assert config.worker_max_tasks == 12  # follows the running-jobs limit unless set
    assert config.allowed_origins == ["https://a.example", "https://b.example"]


def test_unknown_stage_is_refused() -> None:
    with pytest.raises(ValueError, match="staging"):
        _config(stage="staging")


def test_pool_and_client_come_together() -> None:
    with pytest.raises(ValueError, match="user_pool_client_id"):
        _config(user_pool_id="us-east-1_abc")


@pytest.fixture(scope="module")
def imported_pool_template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from stacks.app import build_app

    app, stack = build_app(
        "local",
        outdir=tmp_path_factory.mktemp("imported"),
        context={"user_pool_id": "us-east-1_Imported1", "user_pool_client_id": "client123"},
        bundle=False,
    )
    assembly = app.synth()
    return json.loads(Path(assembly.get_stack_artifact(stack.artifact_id).template_full_path).read_text())


def test_imported_pool_is_trusted_and_none_is_created(imported_pool_template: dict[str, Any]) -> None:
    resources = imported_pool_template["Resources"].values()
    assert not [r for r in resources if r["Type"].startswith("AWS::Cognito::")]
    (authorizer,) = [r for r in resources if r["Type"] == "AWS::ApiGatewayV2::Authorizer"]
    jwt = authorizer["Properties"]["JwtConfiguration"]
    assert jwt["Audience"] == ["client123"]
    assert "us-east-1_Imported1" in json.dumps(jwt["Issuer"])
    outputs = imported_pool_template["Outputs"]
    assert outputs["UserPoolId"]["Value"] == "us-east-1_Imported1"
    assert outputs["UserPoolClientId"]["Value"] == "client123"


@pytest.mark.parametrize(("context", "indexes"), [({}, 2), ({"marketplace_indexes": "1"}, 1)])
def test_marketplace_indexes_can_be_added_one_deployment_at_a_time(
    context: dict[str, str], indexes: int
) -> None:
    """CloudFormation adds one GSI per table update: an old stack upgrades with 1, then 2."""
    from aws_cdk.assertions import Template

    from stacks.storage import Storage

    app = cdk.App(context={"stage": "local", **context})  # the bare Storage construct, no app flags
    stack = cdk.Stack(app, "Upgrade")
    storage = Storage(stack, "Storage", config=Config.from_context(app.node))
    table = storage.templates.node.default_child
    assert table is not None
    names = [
        i["IndexName"]
        for i in Template.from_stack(stack).to_json()["Resources"][stack.get_logical_id(table)]["Properties"][
            "GlobalSecondaryIndexes"
        ]
    ]  # type: ignore[arg-type]
    assert (
        names
        == ["user-templates-index", "public-templates-index", "public-popular-index", "public-name-index"][
            : 2 + indexes
        ]
    )


def test_marketplace_indexes_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="marketplace_indexes"):
        _config(marketplace_indexes="3")


def test_partition_size_and_concurrency_come_from_context_and_are_bounded() -> None:
    config = _config(partition_records="5000", partition_concurrency="40")
    assert (config.partition_records, config.partition_concurrency) == (5000, 40)
    assert (_config().partition_records, _config().partition_concurrency) == (1000, 10)
    with pytest.raises(ValueError, match=r"partition_concurrency must be 1\.\.40"):
        _config(partition_concurrency="41")  # an inline Map runs at most 40 iterations at once
    with pytest.raises(ValueError, match="partition_records must be at least 1"):
        _config(partition_records="0")
