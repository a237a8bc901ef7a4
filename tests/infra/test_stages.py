"""What differs between stages: the local stage is plain CloudFormation MiniStack can deploy (no ECS,
no CDK custom resources, nothing retained, no layer), the prod stage runs the worker on Fargate Spot."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from functions.common.sizes import DEFAULT_TASK_SIZE, TASK_SHAPES, TaskSize
from stacks.bundling import (
    FUNCTION_CODE_EXCLUDES,
    PYTHON_VERSION,
    RUNTIME,
    FunctionCodeBundling,
    compile_bytecode,
    pip_command,
)
from tests.infra.conftest import Synthesized, get_att, ref

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


def test_local_stage_uses_only_resource_types_ministack_deploys(local: Synthesized) -> None:
    from ministack.services.cloudformation.provisioners import _RESOURCE_HANDLERS

    types = {r["Type"] for r in local.resources.values()}
    assert types <= set(_RESOURCE_HANDLERS), types - set(_RESOURCE_HANDLERS)
    assert not [t for t in types if t.startswith("Custom::") or t == "AWS::CloudFormation::CustomResource"]
    assert "AWS::CDK::Metadata" not in types
    assert "Rules" not in local.template  # no bootstrap-version rule: the local deployer bootstraps itself


def test_local_stage_destroys_everything_on_delete(local: Synthesized) -> None:
    for lid, resource in local.resources.items():
        assert resource.get("DeletionPolicy", "Delete") == "Delete", lid


def test_local_stage_has_no_worker_service_and_no_layer(local: Synthesized) -> None:
    types = {r["Type"] for r in local.resources.values()}
    assert not {
        t for t in types if t.startswith(("AWS::ECS::", "AWS::EC2::", "AWS::ApplicationAutoScaling::"))
    }
    for lid, function in local.of_type("AWS::Lambda::Function").items():
        assert not function["Properties"].get("Layers"), lid
        assert function["Properties"]["Environment"]["Variables"]["POWERTOOLS_TRACE_DISABLED"] == "true"
    assert not local.assets.get("dockerImages")


def test_prod_functions_share_the_dependencies_layer(prod: Synthesized) -> None:
    layer_id = prod.logical_id("AWS::Lambda::LayerVersion")
    _, layer = prod.one("AWS::Lambda::LayerVersion")
    assert layer["Properties"]["CompatibleRuntimes"] == [RUNTIME.name]
    for lid, function in prod.of_type("AWS::Lambda::Function").items():
        assert function["Properties"]["Layers"] == [ref(layer_id)], lid


def test_layer_is_built_with_pip_for_the_function_runtime(tmp_path: Any) -> None:
    assert RUNTIME.name == f"python{PYTHON_VERSION}"
    command = pip_command(["pydantic>=2"], tmp_path)
    assert command[command.index("--python-version") + 1] == PYTHON_VERSION
    assert command[command.index("--platform") + 1] == "manylinux2014_x86_64"
    assert "--only-binary=:all:" in command
    assert command[command.index("--target") + 1] == str(tmp_path)


def _unchecked_pyc(source: Path) -> bool:
    """PEP 552: flags 0b01 = hash-based, not checked against the source (the zip keeps no mtimes)."""
    pyc = source.parent / "__pycache__" / f"{source.stem}.{sys.implementation.cache_tag}.pyc"
    return pyc.is_file() and int.from_bytes(pyc.read_bytes()[4:8], "little") == 0b01


def test_the_layer_ships_bytecode_lambda_uses_without_source_mtimes(tmp_path: Path) -> None:
    """/opt is read-only in Lambda: without pycs in the layer every cold start compiles it."""
    package = tmp_path / "python" / "package"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("VALUE = 42\n")

    compile_bytecode(tmp_path / "python")

    assert sys.implementation.cache_tag == f"cpython-{PYTHON_VERSION.replace('.', '')}"
    assert _unchecked_pyc(package / "__init__.py")


def test_bundled_function_code_is_the_functions_package_with_its_bytecode(tmp_path: Path) -> None:
    assert FunctionCodeBundling().try_bundle(str(tmp_path))

    assert {p.name for p in tmp_path.iterdir()} == {"functions"}
    assert not (tmp_path / "functions" / "worker").exists()
    sources = list((tmp_path / "functions").rglob("*.py"))
    assert tmp_path / "functions" / "health" / "handler.py" in sources
    assert [s for s in sources if not _unchecked_pyc(s)] == []


def test_function_code_asset_is_the_functions_package_only(each: Synthesized) -> None:
    # Bundling is skipped here (tests/infra/conftest.py): the staged sources, without bytecode.
    code_keys = {f["Properties"]["Code"]["S3Key"] for f in each.of_type("AWS::Lambda::Function").values()}
    assert len(code_keys) == 1  # one asset shared by every function
    directory = each.file_asset(next(iter(code_keys)))
    top = {p.name for p in directory.iterdir()}
    assert top == {"functions"}, f"{top} (excludes: {FUNCTION_CODE_EXCLUDES})"
    files = [p for p in directory.rglob("*") if p.is_file()]
    assert (directory / "functions" / "health" / "handler.py").is_file()
    assert not [p for p in files if "__pycache__" in p.parts or p.suffix == ".pyc"]
    assert not (directory / "functions" / "worker").exists()
    assert sum(p.stat().st_size for p in files) < 5 * 1024 * 1024


def _queue_name(prod: Synthesized, size: TaskSize) -> str:
    base = prod.names.work_queue
    return base if size is DEFAULT_TASK_SIZE else f"{base}-{size.value}"


def _task_of_size(prod: Synthesized, size: TaskSize) -> dict[str, Any]:
    shape = TASK_SHAPES[size]
    _, task = prod.one("AWS::ECS::TaskDefinition", Cpu=str(shape.cpu_units), Memory=str(shape.memory_mib))
    return task


def _container(prod: Synthesized, size: TaskSize = DEFAULT_TASK_SIZE) -> dict[str, Any]:
    (container,) = _task_of_size(prod, size)["Properties"]["ContainerDefinitions"]
    return container


def test_one_worker_service_per_task_size_on_fargate_spot_from_the_repository_image(
    prod: Synthesized,
) -> None:
    services = prod.of_type("AWS::ECS::Service").values()
    assert len(services) == len(TaskSize)
    task_of_service = {s["Properties"]["TaskDefinition"]["Ref"] for s in services}
    for service in services:
        props = service["Properties"]
        assert props["CapacityProviderStrategy"] == [{"CapacityProvider": "FARGATE_SPOT", "Weight": 1}]
        assert props["DesiredCount"] == 0
        assert props["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] == "ENABLED"
    (image,) = prod.assets["dockerImages"].values()  # one image for every size
    assert image["source"]["dockerFile"] == "Dockerfile"
    for size in TaskSize:
        task_id = prod.logical_id(
            "AWS::ECS::TaskDefinition",
            Cpu=str(TASK_SHAPES[size].cpu_units),
            Memory=str(TASK_SHAPES[size].memory_mib),
        )
        assert task_id in task_of_service
        container = _container(prod, size)
        assert container["Command"] == ["python", "-m", "functions.worker"]
        environment = {e["Name"]: e["Value"] for e in container["Environment"]}
        # Each size's workers poll that size's queue, the one the lifecycle sends its jobs to.
        assert environment["WORK_QUEUE_URL"] == ref(
            prod.logical_id("AWS::SQS::Queue", QueueName=_queue_name(prod, size))
        )
        assert {"JOBS_TABLE", "TEMPLATES_TABLE", "COST_TRACKING_TABLE", "BUCKET_NAME"} <= set(environment)
        assert container["StopTimeout"] == 120


@pytest.mark.parametrize("size", list(TaskSize))
def test_worker_settings_validate_and_match_the_task_size(prod: Synthesized, size: TaskSize) -> None:
    from functions.worker.settings import WorkerSettings

    task = _task_of_size(prod, size)
    environment = {e["Name"]: e["Value"] for e in _container(prod, size)["Environment"]}
    literal = {k: v for k, v in environment.items() if isinstance(v, str)}
    resolved = {k: "resolved-at-deploy" for k, v in environment.items() if not isinstance(v, str)}
    worker = WorkerSettings(**literal, **resolved)
    assert worker.model_provider == "bedrock"
    assert str(worker.task_cpu) == task["Properties"]["Cpu"]
    assert str(worker.task_memory_mib) == task["Properties"]["Memory"]


def test_each_size_scales_with_its_own_work_queue_from_zero(prod: Synthesized) -> None:
    targets = prod.of_type("AWS::ApplicationAutoScaling::ScalableTarget").values()
    assert [(t["Properties"]["MinCapacity"], t["Properties"]["MaxCapacity"]) for t in targets] == [(0, 5)] * 4
    alarms = prod.of_type("AWS::CloudWatch::Alarm").values()
    metrics = [
        query["MetricStat"]["Metric"]
        for alarm in alarms
        for query in alarm["Properties"].get("Metrics", [])
        if "MetricStat" in query
    ]
    for size in TaskSize:
        queue_id = prod.logical_id("AWS::SQS::Queue", QueueName=_queue_name(prod, size))
        queue_name = get_att(queue_id, "QueueName")
        names = {
            m["MetricName"] for m in metrics if {"Name": "QueueName", "Value": queue_name} in m["Dimensions"]
        }
        assert names == {"ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesNotVisible"}
    policies = prod.of_type("AWS::ApplicationAutoScaling::ScalingPolicy").values()
    assert {p["Properties"]["StepScalingPolicyConfiguration"]["AdjustmentType"] for p in policies} == {
        "ExactCapacity"
    }


def test_worker_task_role_holds_the_work_item_contract_only(prod: Synthesized) -> None:
    task = _task_of_size(prod, DEFAULT_TASK_SIZE)  # one task role for every size
    role_id = task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    actions = set()
    for policy in prod.of_type("AWS::IAM::Policy").values():
        if ref(role_id) in policy["Properties"]["Roles"]:
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                action = statement["Action"]
                actions |= set(action if isinstance(action, list) else [action])
    assert actions == {
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",
        "dynamodb:Query",  # the export sums the job's deltas
        "s3:GetObject",
        "s3:PutObject",
        "s3:AbortMultipartUpload",
        "s3:ListBucket",
        "sqs:ReceiveMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueUrl",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "states:SendTaskSuccess",
        "states:SendTaskFailure",
        "states:SendTaskHeartbeat",
        "bedrock:InvokeModel",
        "bedrock:InvokeModelWithResponseStream",
        "ecs:UpdateTaskProtection",
        "ecs:GetTaskProtection",
    }


def test_worker_task_role_may_protect_only_its_own_clusters_tasks_from_scale_in(prod: Synthesized) -> None:
    # The ECS agent's task protection endpoint calls UpdateTaskProtection with the task role.
    task = _task_of_size(prod, DEFAULT_TASK_SIZE)  # one task role for every size
    role_id = task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    cluster_id = prod.logical_id("AWS::ECS::Cluster", ClusterName=prod.names.cluster)
    found = [
        statement
        for policy in prod.of_type("AWS::IAM::Policy").values()
        if ref(role_id) in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if any(str(a).startswith("ecs:") for a in statement["Action"])
    ]
    assert found == [
        {
            "Action": ["ecs:GetTaskProtection", "ecs:UpdateTaskProtection"],
            "Effect": "Allow",
            "Resource": {
                "Fn::Join": [
                    "",
                    [
                        "arn:",
                        ref("AWS::Partition"),
                        ":ecs:",
                        ref("AWS::Region"),
                        ":",
                        ref("AWS::AccountId"),
                        ":task/",
                        ref(cluster_id),
                        "/*",
                    ],
                ]
            },
        }
    ]
    # ECS injects ECS_AGENT_URI itself; the stack must not pin it.
    assert "ECS_AGENT_URI" not in {e["Name"] for e in _container(prod)["Environment"]}


def test_local_stage_outputs_every_resource_under_the_variable_it_fills(
    local: Synthesized, prod: Synthesized
) -> None:
    from local.runtime.resources import REQUIRED, environment_name

    outputs = local.template["Outputs"]
    variables = {environment_name(key): output["Value"] for key, output in outputs.items()}
    assert set(REQUIRED) <= set(variables)
    assert variables["JOBS_TABLE"] == ref(
        local.logical_id("AWS::DynamoDB::Table", TableName=local.names.jobs_table)
    )
    assert variables["API_ID"] == ref(local.logical_id("AWS::ApiGatewayV2::Api"))
    # The same resource variables the prod worker's ECS task gets, by the same names and values.
    # (one ECS task definition per task size, each with its own work queue).
    worker_resources = {
        "WORK_QUEUE_URL",
        "JOBS_TABLE",
        "TEMPLATES_TABLE",
        "COST_TRACKING_TABLE",
        "BUCKET_NAME",
    }
    task_definitions = prod.of_type("AWS::ECS::TaskDefinition").values()
    assert len(task_definitions) == 4
    for task in task_definitions:
        container_env = {e["Name"] for e in task["Properties"]["ContainerDefinitions"][0]["Environment"]}
        assert worker_resources <= container_env
    assert worker_resources <= set(variables)
    # Prod keeps its operator-facing outputs only.
    assert "ApiId" not in prod.template["Outputs"]
