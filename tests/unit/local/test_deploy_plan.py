"""What a redeploy sends to CloudFormation: create, recreate, skip (unchanged) or update."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local.commands.local import load_digests
from local.deploy import DeployError, StackArtifact, plan_stack, read_assembly, template_digest

pytestmark = pytest.mark.unit

DIGEST, OTHER = "a" * 64, "b" * 64


@pytest.mark.parametrize(
    ("status", "previous", "plan"),
    [
        (None, None, "create"),
        (None, DIGEST, "create"),  # the emulator state was deleted, deploy.json kept
        ("DELETE_COMPLETE", DIGEST, "create"),
        ("ROLLBACK_COMPLETE", DIGEST, "recreate"),  # a failed create: nothing to keep
        ("CREATE_FAILED", None, "recreate"),
        ("CREATE_COMPLETE", DIGEST, "skip"),
        ("UPDATE_COMPLETE", DIGEST, "skip"),
        ("CREATE_COMPLETE", OTHER, "update"),  # the template changed
        ("UPDATE_COMPLETE", OTHER, "update"),
        ("CREATE_COMPLETE", None, "update"),  # no record of the last deploy: let CloudFormation decide
        ("UPDATE_ROLLBACK_COMPLETE", DIGEST, "update"),  # the last update failed: try again
    ],
)
def test_the_plan_for_each_stack_status(status: str | None, previous: str | None, plan: str) -> None:
    assert plan_stack(status, DIGEST, previous) == plan


@pytest.mark.parametrize(
    "status",
    [
        "UPDATE_ROLLBACK_FAILED",
        "ROLLBACK_FAILED",
        "DELETE_FAILED",
        "UPDATE_IN_PROGRESS",
        "CREATE_IN_PROGRESS",
    ],
)
def test_a_stack_that_cannot_be_updated_says_what_to_do(status: str) -> None:
    with pytest.raises(DeployError, match=f"the stack is {status}.*delete the state dir"):
        plan_stack(status, DIGEST, DIGEST)


def _stack(tmp_path: Path, body: dict[str, object], name: str = "template.json") -> StackArtifact:
    path = tmp_path / name
    path.write_text(json.dumps(body, indent=1))
    return StackArtifact(name="PlotPalette-local", template_path=path, asset_manifest=None)


def test_any_byte_of_the_template_counts_as_a_change(tmp_path: Path) -> None:
    template = {"Resources": {"Jobs": {"Type": "AWS::DynamoDB::Table", "Properties": {"TableName": "jobs"}}}}
    first = template_digest(_stack(tmp_path, template, "a.json"))
    assert template_digest(_stack(tmp_path, template, "b.json")) == first  # same bytes, another file
    # A changed property (e.g. -c max_running_jobs=4 or a new code asset hash) changes the digest ...
    changed = {"Resources": {"Jobs": {"Type": "AWS::DynamoDB::Table", "Properties": {"TableName": "jobs2"}}}}
    assert template_digest(_stack(tmp_path, changed, "c.json")) != first
    # ... and so does mere formatting: the plan is then an update CloudFormation finds empty.
    reformatted = tmp_path / "d.json"
    reformatted.write_text(json.dumps(template))
    assert template_digest(StackArtifact("PlotPalette-local", reformatted, None)) != first


def test_stacks_deploy_dependencies_first(tmp_path: Path) -> None:
    for name in ("Api", "Data", "Base"):
        (tmp_path / f"{name}.template.json").write_text("{}")
    (tmp_path / "Api.assets.json").write_text("{}")
    manifest = {
        "artifacts": {
            "Api": {
                "type": "aws:cloudformation:stack",
                "properties": {"templateFile": "Api.template.json", "stackName": "pp-api"},
                "dependencies": ["Data", "Api.assets"],
            },
            "Api.assets": {"type": "cdk:asset-manifest", "properties": {"file": "Api.assets.json"}},
            "Data": {
                "type": "aws:cloudformation:stack",
                "properties": {"templateFile": "Data.template.json"},
                "dependencies": ["Base"],
            },
            "Base": {
                "type": "aws:cloudformation:stack",
                "properties": {"templateFile": "Base.template.json"},
            },
            "Tree": {"type": "cdk:tree", "properties": {"file": "tree.json"}},
        }
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    stacks = read_assembly(tmp_path)
    assert [stack.name for stack in stacks] == ["Base", "Data", "pp-api"]
    assert stacks[-1].asset_manifest == tmp_path / "Api.assets.json"
    assert stacks[0].asset_manifest is None


def test_an_assembly_without_stacks_is_a_deploy_error(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"artifacts": {}}))
    with pytest.raises(DeployError, match="holds no CloudFormation stack; did the synth succeed"):
        read_assembly(tmp_path)


@pytest.mark.parametrize("text", ["", "{", "[]", '"x"'])
def test_an_unreadable_deploy_json_means_no_record(tmp_path: Path, text: str) -> None:
    (tmp_path / "deploy.json").write_text(text)
    assert load_digests(tmp_path) == {}


def test_deploy_json_is_read_back(tmp_path: Path) -> None:
    (tmp_path / "deploy.json").write_text(json.dumps({"PlotPalette-local": DIGEST}))
    assert load_digests(tmp_path) == {"PlotPalette-local": DIGEST}
    assert load_digests(tmp_path / "missing") == {}
