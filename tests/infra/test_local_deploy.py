"""The synthesized local stage really deploys onto MiniStack and serves: /health without a token,
every other route refused without one (the JWT authorizer is enforced by the emulator)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from local.deploy import deploy_assembly
from local.emulator import Emulator, start_emulator
from tests.infra.conftest import Synthesized

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


@pytest.fixture(scope="module")
def deployed(local: Synthesized) -> Iterator[tuple[Emulator, dict[str, str]]]:
    emulator = start_emulator()
    try:
        outputs, _ = deploy_assembly(
            emulator.client, local.assembly_dir, previous={}, progress=lambda _: None
        )
        yield emulator, outputs
    finally:
        emulator.stop()


def _get(url: str, timeout: float = 30) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, None


def test_every_resource_is_created(deployed: tuple[Emulator, dict[str, str]], local: Synthesized) -> None:
    emulator, _ = deployed
    cfn = emulator.client("cloudformation")
    resources = cfn.describe_stack_resources(StackName=local.names.stack)["StackResources"]
    assert len(resources) == len(local.resources)
    assert {r["ResourceStatus"] for r in resources} == {"CREATE_COMPLETE"}


def test_outputs_name_the_stage_resources(
    deployed: tuple[Emulator, dict[str, str]], local: Synthesized
) -> None:
    _, outputs = deployed
    assert outputs["EventBusName"] == local.names.event_bus
    assert outputs["BucketName"] == local.names.bucket("unused", "unused")
    assert outputs["JobsTableName"] == local.names.jobs_table
    assert outputs["UserPoolId"]
    assert outputs["UserPoolClientId"]


def test_the_runtime_finds_every_resource_from_the_outputs(
    deployed: tuple[Emulator, dict[str, str]], local: Synthesized
) -> None:
    from local.runtime.resources import environment_from_outputs

    emulator, outputs = deployed
    environment = environment_from_outputs(outputs)
    assert environment["JOBS_TABLE"] == local.names.jobs_table
    assert environment["EVENT_BUS_NAME"] == local.names.event_bus
    assert (
        environment["WORK_QUEUE_URL"]
        == emulator.client("sqs").get_queue_url(QueueName=local.names.work_queue)["QueueUrl"]
    )
    assert environment["LIFECYCLE_STATE_MACHINE_ARN"].startswith("arn:aws:states:")
    assert environment["API_ID"] in outputs["ApiEndpoint"]


def test_health_is_public_and_jobs_need_a_token(deployed: tuple[Emulator, dict[str, str]]) -> None:
    emulator, outputs = deployed
    api_id = outputs["ApiEndpoint"].split("//", 1)[1].split(".", 1)[0]
    base = f"{emulator.endpoint}/_aws/execute-api/{api_id}"
    assert _get(f"{base}/health") == (200, {"status": "ok"})
    status, _ = _get(f"{base}/jobs")
    assert status == 401
