"""local/deploy.py against a real MiniStack: create, an unchanged stack skipped, a changed one updated.

A bare emulator (no runtime: the session runtime of conftest.py is not touched) and a two-resource
assembly written here, so the whole test takes a few seconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.deploy import deploy_assembly
from local.emulator import Emulator, start_emulator

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

STACK = "pp-deploy-update-check"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emulator = start_emulator()
    try:
        yield emulator
    finally:
        emulator.stop()


def _assembly(directory: Path, resources: dict[str, Any], outputs: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    template = {"Resources": resources, "Outputs": outputs}
    (directory / f"{STACK}.template.json").write_text(json.dumps(template, indent=1))
    manifest = {
        "version": "36.0.0",
        "artifacts": {
            STACK: {
                "type": "aws:cloudformation:stack",
                "environment": "aws://000000000000/us-east-1",
                "properties": {"templateFile": f"{STACK}.template.json", "stackName": STACK},
            }
        },
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


QUEUE = {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "pp-deploy-update-work"}}
TABLE = {
    "Type": "AWS::DynamoDB::Table",
    "Properties": {
        "TableName": "pp-deploy-update-jobs",
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": "job_id", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "job_id", "KeyType": "HASH"}],
    },
}


def test_a_changed_stack_is_updated_in_place_and_an_unchanged_one_is_not_sent(
    emulator: Emulator, tmp_path: Path
) -> None:
    said: list[str] = []
    first = _assembly(
        tmp_path / "v1", {"Work": QUEUE}, {"WorkQueueName": {"Value": {"Fn::GetAtt": ["Work", "QueueName"]}}}
    )
    outputs, digests = deploy_assembly(emulator.client, first, previous={}, progress=said.append)
    assert f"  creating stack {STACK}" in said
    assert outputs == {"WorkQueueName": "pp-deploy-update-work"}
    sqs = emulator.client("sqs")
    queue_url = sqs.get_queue_url(QueueName="pp-deploy-update-work")["QueueUrl"]
    sqs.send_message(QueueUrl=queue_url, MessageBody="kept across the update")

    said.clear()
    again, same = deploy_assembly(emulator.client, first, previous=digests, progress=said.append)
    assert (again, same) == (outputs, digests)
    assert f"  {STACK} unchanged since the last deploy" in said
    assert not any("updating" in line or "creating" in line for line in said)

    said.clear()
    second = _assembly(
        tmp_path / "v2",
        {"Work": QUEUE, "Jobs": TABLE},
        {
            "WorkQueueName": {"Value": {"Fn::GetAtt": ["Work", "QueueName"]}},
            "JobsTableName": {"Value": {"Ref": "Jobs"}},
        },
    )
    outputs, new_digests = deploy_assembly(emulator.client, second, previous=digests, progress=said.append)
    assert f"  updating stack {STACK}" in said
    assert f"  {STACK}: UPDATE_COMPLETE" in said
    assert new_digests[STACK] != digests[STACK]
    assert outputs == {"WorkQueueName": "pp-deploy-update-work", "JobsTableName": "pp-deploy-update-jobs"}
    assert (
        emulator.client("dynamodb").describe_table(TableName="pp-deploy-update-jobs")["Table"]["TableStatus"]
        == "ACTIVE"
    )
    # The queue was not replaced: its message is still there.
    received = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", [])
    assert [m["Body"] for m in received] == ["kept across the update"]

    # No record of the last deploy (deploy.json deleted): the update is sent, and CloudFormation
    # answers, as on AWS, that there is nothing to do; that is not an error.
    said.clear()
    _, final = deploy_assembly(emulator.client, second, previous={}, progress=said.append)
    assert f"  updating stack {STACK}" in said
    assert f"  {STACK}: no updates are to be performed" in said
    assert final == new_digests
