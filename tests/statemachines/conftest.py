"""One MiniStack per test process (pytest-xdist workers each start their own) with the real state
machines, tables, bucket, bus, event capture and work queue; helpers to seed jobs as the API and
the promoter leave them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from functions.common.clock import now_iso
from functions.common.events import EVENTS_BY_DETAIL_TYPE, EventDetail
from tests.support.lifecycle_worker import LifecycleWorker, WorkOutcome
from tests.support.ministack import StateMachineStack, start_stack

pytestmark = pytest.mark.statemachines

HEARTBEAT_SECONDS = 3
BATCH_SIZE = 2
# Partitions of two batches (four records): a job of 5 records has three batches in two partitions.
PARTITION_RECORDS = 4
# The app's context values (docs/deploy.md) the prod stage is synthesized with for these tests; every
# other substitution is the template's. Shortened so a silent worker times out in seconds instead of
# 5 minutes and a stuck job in a minute instead of a day; batches of 2 so a 5-record job has several
# batches for a test to act between.
TEST_CONTEXT = {
    "heartbeat_seconds": str(HEARTBEAT_SECONDS),
    "job_timeout_seconds": "60",
    "batch_size": str(BATCH_SIZE),
    "partition_records": str(PARTITION_RECORDS),
}
LIFECYCLE = "plot-palette-job-lifecycle"
CANCELLATION = "plot-palette-job-cancellation"
CLEANUP = "plot-palette-job-cleanup"
# The cleanup file deployed a second time with CleanupRoundsPerExecution = 2, to run continuations.
CLEANUP_TWO_ROUNDS = "plot-palette-job-cleanup-two-rounds"
# The lifecycle file deployed a second time with PartitionConcurrency = 1: one partition in flight.
LIFECYCLE_SERIAL = "plot-palette-job-lifecycle-one-partition-at-a-time"
# Its heartbeat is long: the tests on it pause a partition's worker on purpose (a cancellation runs
# between two batches), and on a loaded machine that pause can outlast HEARTBEAT_SECONDS; the task's
# Retry would then send the same partition again under a new token, which is not what they test.
# Half the job timeout, which stays the bound on a stuck test.
SERIAL_HEARTBEAT_SECONDS = int(TEST_CONTEXT["job_timeout_seconds"]) // 2
SHIM_CHECK = "shim-check-mock-attempts"  # created by test_stepfunctions_shim.py
# The promoter's conditions (docs/data-model.md); tests run jobs one at a time, the limit is not tested here.
PROMOTER_MAX_RUNNING = 1000
CLAIM_CONDITION = "(attribute_not_exists(holders) OR size(holders) < :max) AND NOT contains(holders, :job_id)"
# The template of the job the 'JobGoneBeforeItsDelete' test case's mocked read returns.
MOCKED_READ_TEMPLATE = "tpl-of-a-job-deleted-meanwhile"
STILL_QUEUED = "#status = :queued AND attribute_not_exists(cancel_requested_at)"


def _throw(error: str, cause: str = "injected by the mock config") -> dict[str, Any]:
    return {"Throw": {"Error": error, "Cause": cause}}


# AWS Step Functions Local mock-config format: numbered attempts of a task; an attempt a test case
# does not list makes the real call (local/shims/stepfunctions.py counts attempts as AWS does).
MOCK_CONFIG: dict[str, Any] = {
    "StateMachines": {
        LIFECYCLE: {
            "TestCases": {
                "TransientErrors": {
                    "Mark job running": "DynamoDBThrottledTwice",
                    "Emit job started": "EventBridgeInternalErrorOnce",
                    "Send a partition to a worker and wait": "SQSClientErrorOnce",
                    "Export the job": "SQSClientErrorOnce",
                    "Mark job completed": "DynamoDBServerErrorOnce",
                    "Release job slot": "DynamoDBThrottledTwice",
                    "Emit job completed": "EventBridgeInternalErrorOnce",
                },
                # Six failed attempts exhaust a task's Retry (MaxAttempts 5): the next one would succeed.
                "MarkRunningKeepsFailing": {"Mark job running": "DynamoDBServerErrorSixTimes"},
                "MarkCompletedKeepsFailing": {"Mark job completed": "DynamoDBServerErrorSixTimes"},
                "MarkCancelledAndItsReleaseKeepFailing": {
                    "Mark job cancelled": "DynamoDBServerErrorSixTimes",
                    "Release the job slot after the lifecycle failed": "DynamoDBAlwaysFails",
                },
                # The last resort retries longer (MaxAttempts 10): twenty failures exhaust it too.
                "MarkRunningAndTheLastResortKeepFailing": {
                    "Mark job running": "DynamoDBServerErrorSixTimes",
                    "Mark job failed after the lifecycle failed": "DynamoDBAlwaysFails",
                },
            }
        },
        CANCELLATION: {
            "TestCases": {
                "TransientErrors": {
                    "Read the job": "DynamoDBServerErrorOnce",
                    "Fail the worker's task": "SfnThrottledOnce",
                },
            }
        },
        SHIM_CHECK: {"TestCases": {"Attempts": {"Put a marker": "ThrowTwiceThenReturn"}}},
        CLEANUP: {
            "TestCases": {
                "TransientErrors": {
                    "List a page of job objects": "S3SlowDownOnce",
                    "Delete the page of job objects": "S3SlowDownOnce",
                    "Query a page of cost records": "DynamoDbSdkThrottledOnce",
                    "Delete the page of cost records": "DynamoDbSdkThrottledOnce",
                },
                # The second page of objects cannot be deleted, whatever the retries: the run fails
                # half-way and a plain re-run has to finish the job.
                "SecondObjectPageFails": {"Delete the page of job objects": "S3FailsFromSecondAttempt"},
                # The job item and the counter go, then 'Job Deleted' cannot be emitted: a partial
                # failure after the transaction, which a re-run must not repeat.
                "EmitJobDeletedFails": {"Emit job deleted": "EventBridgeAlwaysFails"},
                # The read sees a terminal job that a concurrent run deletes before the transaction.
                "JobGoneBeforeItsDelete": {"Read the job": "ReadsAJobDeletedMeanwhile"},
                "JobItemDeleteFails": {
                    "Delete the job item and release its template": "DynamoDbSdkAlwaysFails"
                },
            }
        },
        CLEANUP_TWO_ROUNDS: {
            "TestCases": {
                "ContinuationAlreadyStarted": {
                    "Continue the cleanup in a new execution": "SfnExecutionAlreadyExists"
                },
                "ContinuationKeepsFailing": {
                    "Continue the cleanup in a new execution": "SfnServiceErrorSixTimes"
                },
            }
        },
    },
    "MockedResponses": {
        "ThrowTwiceThenReturn": {
            "0-1": _throw("DynamoDB.ProvisionedThroughputExceededException"),
            "2": {"Return": {"mocked": "third attempt"}},
        },
        "DynamoDBThrottledTwice": {"0-1": _throw("DynamoDB.ProvisionedThroughputExceededException")},
        "DynamoDBServerErrorOnce": {"0": _throw("DynamoDB.InternalServerErrorException")},
        "DynamoDBServerErrorSixTimes": {"0-5": _throw("DynamoDB.InternalServerErrorException")},
        "DynamoDBAlwaysFails": {"0-19": _throw("DynamoDB.InternalServerErrorException")},
        "EventBridgeInternalErrorOnce": {"0": _throw("EventBridge.InternalException")},
        "EventBridgeAlwaysFails": {"0-19": _throw("EventBridge.InternalException")},
        "ReadsAJobDeletedMeanwhile": {
            "0": {
                "Return": {
                    "Item": {
                        "status": {"S": "COMPLETED"},
                        "queue_key": {"S": "05#2026-11-28T00:00:00.000Z#deleted-meanwhile"},
                        "template_id": {"S": MOCKED_READ_TEMPLATE},
                    }
                }
            }
        },
        "SQSClientErrorOnce": {"0": _throw("SQS.SdkClientException")},
        "SfnThrottledOnce": {"0": _throw("Sfn.ThrottlingException")},
        "SfnExecutionAlreadyExists": {"0": _throw("StepFunctions.ExecutionAlreadyExistsException")},
        "SfnServiceErrorSixTimes": {"0-5": _throw("StepFunctions.AWSStepFunctionsException")},
        "S3SlowDownOnce": {"0": _throw("S3.SlowDownException")},
        "S3FailsFromSecondAttempt": {"1-9": _throw("S3.S3Exception", "We encountered an internal error")},
        "DynamoDbSdkThrottledOnce": {"0": _throw("DynamoDb.ThrottlingException")},
        "DynamoDbSdkAlwaysFails": {"0-19": _throw("DynamoDb.InternalServerErrorException")},
    },
}


@pytest.fixture(scope="session")
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StateMachineStack]:
    directory = tmp_path_factory.mktemp("ministack")
    mock_config = directory / "sfn-mock-config.json"
    mock_config.write_text(json.dumps(MOCK_CONFIG, indent=2))
    deployed = start_stack(
        mock_config,
        context=TEST_CONTEXT,
        cache=getattr(request.config, "cache", None),
        log_path=directory / "ministack.log",
    )
    # Two rounds per execution instead of the stack's 200, so a test reaches a continuation with a
    # few dozen objects (CleanupRoundsPerExecution is a constant of stacks/orchestration.py, no context).
    deployed.deploy(
        "job_cleanup_two_rounds", "job_cleanup", CLEANUP_TWO_ROUNDS, CleanupRoundsPerExecution="2"
    )
    deployed.deploy(
        "job_lifecycle_one_partition_at_a_time",
        "job_lifecycle",
        LIFECYCLE_SERIAL,
        PartitionConcurrency="1",
        HeartbeatSeconds=str(SERIAL_HEARTBEAT_SECONDS),
    )
    yield deployed
    deployed.emulator.stop()


@pytest.fixture
def env(stack: StateMachineStack) -> Env:
    """The stack with an empty work queue and event capture at the start of the test."""
    stack.client("sqs").purge_queue(QueueUrl=stack.work_queue_url)
    stack.capture.drain()
    return Env(stack)


@dataclass
class Env:
    stack: StateMachineStack

    def client(self, service: str) -> Any:
        return self.stack.client(service)

    def worker(self) -> LifecycleWorker:
        return LifecycleWorker(
            sqs=self.client("sqs"),
            sfn=self.client("stepfunctions"),
            dynamodb=self.client("dynamodb"),
            s3=self.client("s3"),
            work_queue_url=self.stack.work_queue_url,
            jobs_table=self.stack.jobs_table,
            cost_tracking_table=self.stack.cost_tracking_table,
            bucket=self.stack.bucket,
        )

    def drive(
        self,
        execution_arn: str,
        handle: Callable[[LifecycleWorker, dict[str, Any]], WorkOutcome] | None = None,
        timeout: float = 45.0,
    ) -> list[tuple[dict[str, Any], WorkOutcome]]:
        """Play the workers until the execution ends: receive each work item (partitions, the export)
        and hand it to ``handle`` (default: do it). Answers every item in the order it arrives; a
        "died" outcome leaves its message (like a crashed worker), others are deleted."""
        worker, done = self.worker(), []
        handle = handle or (lambda w, item: w.process(item))
        sfn = self.client("stepfunctions")
        deadline = time.monotonic() + timeout
        while sfn.describe_execution(executionArn=execution_arn)["status"] == "RUNNING":
            if time.monotonic() > deadline:
                raise AssertionError(f"the execution still runs after {timeout:.0f} s; items: {done}")
            received = worker.receive(wait_seconds=1)
            if received is None:
                continue
            item, receipt = received
            outcome = handle(worker, item)
            if outcome.reported != "died":
                self.client("sqs").delete_message(QueueUrl=self.stack.work_queue_url, ReceiptHandle=receipt)
            done.append((item, outcome))
        return done

    def deltas(self, job_id: str) -> list[str]:
        """The record ids of the job's CostTracking items, in order."""
        items = self.client("dynamodb").query(
            TableName=self.stack.cost_tracking_table,
            KeyConditionExpression="job_id = :job",
            ExpressionAttributeValues={":job": {"S": job_id}},
            ConsistentRead=True,
        )["Items"]
        return [item["record_id"]["S"] for item in items]

    def exported(self, job_id: str) -> list[int]:
        """The record positions in the job's export file, in file order."""
        body = self.client("s3").get_object(Bucket=self.stack.bucket, Key=LifecycleWorker.export_key(job_id))[
            "Body"
        ]
        return [json.loads(line)["index"] for line in body.read().decode().splitlines() if line]

    # ---------------------------------------------------------------- seeding, as the API and promoter do

    def create_job(
        self,
        *,
        num_records: int = 5,
        priority: int = 5,
        budget_limit: str = "10",
        template_id: str | None = None,
        task_size: str | None = "medium",
    ) -> dict[str, str]:
        """A QUEUED job with its Queue item and +1 on its template head's ``job_refs``, as ``POST /jobs``
        writes them (a template of its own unless ``template_id`` is given; its head is created)."""
        job_id, user_id, created_at = str(uuid.uuid4()), f"user-{uuid.uuid4().hex[:8]}", now_iso()
        template_id = template_id or f"tpl-{uuid.uuid4().hex[:12]}"
        queue_key = f"{10 - priority:02d}#{created_at}#{job_id}"
        ddb = self.client("dynamodb")
        ddb.put_item(
            TableName=self.stack.jobs_table,
            Item={
                "job_id": {"S": job_id},
                "user_id": {"S": user_id},
                "status": {"S": "QUEUED"},
                "user_status": {"S": f"{user_id}#QUEUED"},
                "template_id": {"S": template_id},
                "template_version": {"N": "3"},
                "seed_data_path": {"S": f"seed-data/{user_id}/authors.jsonl"},
                "budget_limit": {"N": budget_limit},
                "output_format": {"S": "JSONL"},
                "num_records": {"N": str(num_records)},
                "priority": {"N": str(priority)},
                "queue_key": {"S": queue_key},
                "created_at": {"S": created_at},
                "updated_at": {"S": created_at},
                "records_generated": {"N": "0"},
                "tokens_used": {"N": "0"},
                "cost": {"M": {k: {"N": "0"} for k in ("bedrock", "fargate", "s3", "total")}},
                **({"task_size": {"S": task_size}} if task_size else {}),
            },
        )
        ddb.put_item(
            TableName=self.stack.queue_table,
            Item={
                "status": {"S": "QUEUED"},
                "queue_key": {"S": queue_key},
                "job_id": {"S": job_id},
                "user_id": {"S": user_id},
                "priority": {"N": str(priority)},
                "created_at": {"S": created_at},
            },
        )
        ddb.update_item(
            TableName=self.stack.templates_table,
            Key={"template_id": {"S": template_id}, "version": {"N": "0"}},
            UpdateExpression="SET latest_version = if_not_exists(latest_version, :v) ADD job_refs :one",
            ExpressionAttributeValues={":v": {"N": "3"}, ":one": {"N": "1"}},
        )
        return {"job_id": job_id, "user_id": user_id, "queue_key": queue_key, "template_id": template_id}

    def job_refs(self, template_id: str) -> int | None:
        """The template head's ``job_refs`` (None: the head is gone)."""
        item = (
            self.client("dynamodb")
            .get_item(
                TableName=self.stack.templates_table,
                Key={"template_id": {"S": template_id}, "version": {"N": "0"}},
                ConsistentRead=True,
            )
            .get("Item")
        )
        if item is None:
            return None
        return int(item.get("job_refs", {"N": "0"})["N"])

    def promote(self, job: dict[str, str], test_case: str | None = None) -> str:
        """The promoter's transaction (claim a slot, dequeue, check the job), then StartExecution."""
        self.claim(job)
        return self.start_lifecycle(job, test_case)

    def claim(self, job: dict[str, str]) -> None:
        """The promoter's transaction: claim a running slot, dequeue the job, check it is still QUEUED."""
        self.client("dynamodb").transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": self.stack.queue_table,
                        "Key": {"status": {"S": "SLOTS"}, "queue_key": {"S": "RUNNING"}},
                        "UpdateExpression": "ADD holders :job",
                        "ConditionExpression": CLAIM_CONDITION,
                        "ExpressionAttributeValues": {
                            ":max": {"N": str(PROMOTER_MAX_RUNNING)},
                            ":job": {"SS": [job["job_id"]]},
                            ":job_id": {"S": job["job_id"]},
                        },
                    }
                },
                {
                    "Delete": {
                        "TableName": self.stack.queue_table,
                        "Key": {"status": {"S": "QUEUED"}, "queue_key": {"S": job["queue_key"]}},
                        "ConditionExpression": "attribute_exists(queue_key)",
                    }
                },
                {
                    "ConditionCheck": {
                        "TableName": self.stack.jobs_table,
                        "Key": {"job_id": {"S": job["job_id"]}},
                        "ConditionExpression": STILL_QUEUED,
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": {":queued": {"S": "QUEUED"}},
                    }
                },
            ]
        )

    def start_lifecycle(self, job: dict[str, str], test_case: str | None = None) -> str:
        return self.stack.start(
            "job_lifecycle",
            {"job_id": job["job_id"], "user_id": job["user_id"]},
            name=job["job_id"],
            test_case=test_case,
        )

    def request_cancellation(self, job: dict[str, str], test_case: str | None = None) -> str:
        """What ``DELETE /jobs/{id}`` on a QUEUED/RUNNING job does, then the rule starting the machine."""
        requested_at = now_iso()
        answer = self.client("dynamodb").update_item(
            TableName=self.stack.jobs_table,
            Key={"job_id": {"S": job["job_id"]}},
            UpdateExpression="SET cancel_requested_at = :now, updated_at = :now",
            ConditionExpression="#status IN (:queued, :running)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":now": {"S": requested_at},
                ":queued": {"S": "QUEUED"},
                ":running": {"S": "RUNNING"},
            },
            ReturnValues="ALL_NEW",
        )
        detail = {
            "job_id": job["job_id"],
            "user_id": job["user_id"],
            "requested_at": requested_at,
            "status": answer["Attributes"]["status"]["S"],
        }
        return self.stack.start(
            "job_cancellation", envelope("Job Cancellation Requested", detail), test_case=test_case
        )

    def request_deletion(
        self, job: dict[str, str], test_case: str | None = None, machine: str = "job_cleanup"
    ) -> str:
        status = self.job(job["job_id"]).get("status", "COMPLETED")
        detail = {
            "job_id": job["job_id"],
            "user_id": job["user_id"],
            "requested_at": now_iso(),
            "status": status,
        }
        return self.stack.start(machine, envelope("Job Deletion Requested", detail), test_case=test_case)

    # ---------------------------------------------------------------- reading back

    def job(self, job_id: str) -> dict[str, Any]:
        from boto3.dynamodb.types import TypeDeserializer

        item = (
            self.client("dynamodb")
            .get_item(TableName=self.stack.jobs_table, Key={"job_id": {"S": job_id}}, ConsistentRead=True)
            .get("Item")
        )
        deserializer = TypeDeserializer()
        return {k: deserializer.deserialize(v) for k, v in (item or {}).items()}

    def slot_holders(self) -> set[str]:
        item = (
            self.client("dynamodb")
            .get_item(
                TableName=self.stack.queue_table,
                Key={"status": {"S": "SLOTS"}, "queue_key": {"S": "RUNNING"}},
                ConsistentRead=True,
            )
            .get("Item", {})
        )
        return set(item.get("holders", {}).get("SS", []))

    def queue_item_exists(self, job: dict[str, str]) -> bool:
        return "Item" in self.client("dynamodb").get_item(
            TableName=self.stack.queue_table,
            Key={"status": {"S": "QUEUED"}, "queue_key": {"S": job["queue_key"]}},
        )

    def events(self, job_id: str, expected: int, timeout: float = 5.0) -> list[EventDetail]:
        """The events emitted for one job, validated against their typed models, in arrival order."""
        import time

        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            for envelope_ in self.stack.capture.drain():
                if envelope_["detail"].get("job_id") == job_id:
                    found.append(envelope_)
            if len(found) >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        models = []
        for envelope_ in found:
            assert envelope_["source"] == "plot-palette.jobs"
            model = EVENTS_BY_DETAIL_TYPE[envelope_["detail-type"]]
            models.append(model.model_validate(envelope_["detail"]))
        return models

    def set_budget_exceeded(self, job_id: str) -> None:
        """What the cost rollup does once the rolled-up cost reaches the budget."""
        self.client("dynamodb").update_item(
            TableName=self.stack.jobs_table,
            Key={"job_id": {"S": job_id}},
            UpdateExpression="SET budget_exceeded = :true",
            ExpressionAttributeValues={":true": {"BOOL": True}},
        )


def envelope(detail_type: str, detail: dict[str, Any]) -> dict[str, Any]:
    """An EventBridge event as a rule hands it to a Step Functions target."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": "plot-palette.jobs",
        "account": "000000000000",
        "time": now_iso()[:19] + "Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


def money(value: str) -> Decimal:
    return Decimal(value)


def repo_path(*parts: str) -> Path:
    return Path(__file__).resolve().parents[2].joinpath(*parts)
