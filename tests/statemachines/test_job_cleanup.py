"""The cleanup state machine: S3 and cost records deleted page by page, leftovers, idempotent re-runs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from functions.common.events import JobDeleted
from tests.statemachines.conftest import MOCKED_READ_TEMPLATE, Env

pytestmark = pytest.mark.statemachines

START = ["Read the deletion request", "Read the job", "Check the job is terminal"]
OBJECT_PAGE = [
    "List a page of job objects",
    "Check the page of job objects",
    "Delete the page of job objects",
    "Check the objects were deleted",
]
NO_OBJECTS = ["List a page of job objects", "Check the page of job objects"]
COST_PAGE = [
    "Query a page of cost records",
    "Check the page of cost records",
    "Delete the page of cost records",
]
NO_COSTS = ["Query a page of cost records", "Check the page of cost records", "Check for Queue leftovers"]
LEFTOVERS = ["Remove a leftover queue item", "Release a leftover running slot"]
DELETE_JOB = "Delete the job item and release its template"
WHY_CANCELLED = "Check why the job delete was cancelled"


def finished_job(env: Env, status: str = "COMPLETED") -> dict[str, str]:
    job = env.create_job()  # its Queue item stays behind: a leftover to clean up
    env.client("dynamodb").update_item(
        TableName=env.stack.jobs_table,
        Key={"job_id": {"S": job["job_id"]}},
        UpdateExpression="SET #status = :status, user_status = :user_status",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={
            ":status": {"S": status},
            ":user_status": {"S": f"{job['user_id']}#{status}"},
        },
    )
    return job


def put_objects(env: Env, keys: list[str]) -> None:
    s3 = env.client("s3")
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=env.stack.bucket, Key=key, Body=b"{}\n"), keys))


def object_keys(env: Env, prefix: str) -> list[str]:
    pages = env.client("s3").get_paginator("list_objects_v2").paginate(Bucket=env.stack.bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def put_cost_records(env: Env, job_id: str, count: int) -> None:
    ddb = env.client("dynamodb")
    for start in range(0, count, 25):
        ddb.batch_write_item(
            RequestItems={
                env.stack.cost_tracking_table: [
                    {
                        "PutRequest": {
                            "Item": {
                                "job_id": {"S": job_id},
                                "record_id": {"S": f"{i:08d}"},
                                "records": {"N": "1"},
                            }
                        }
                    }
                    for i in range(start, min(start + 25, count))
                ]
            }
        )


def cost_records(env: Env, job_id: str) -> list[dict[str, Any]]:
    pages = (
        env.client("dynamodb")
        .get_paginator("query")
        .paginate(
            TableName=env.stack.cost_tracking_table,
            KeyConditionExpression="job_id = :job_id",
            ExpressionAttributeValues={":job_id": {"S": job_id}},
        )
    )
    return [item for page in pages for item in page["Items"]]


def test_cleanup_deletes_every_page_of_objects_and_cost_records_then_the_job(env: Env) -> None:
    job = finished_job(env)
    job_id = job["job_id"]
    prefix = f"jobs/{job_id}/"
    put_objects(
        env, [f"{prefix}outputs/part-{i:05d}.jsonl" for i in range(1003)] + [f"{prefix}checkpoint.json"]
    )
    # Neighbours that share a prefix string with the job's folder must survive.
    neighbours = [
        f"jobs/{job_id}-other/outputs/part-00000.jsonl",
        f"seed-data/{job['user_id']}/authors.jsonl",
    ]
    put_objects(env, neighbours)
    put_cost_records(env, job_id, 60)
    put_cost_records(env, "another-job", 3)
    env.client("dynamodb").update_item(  # a slot holder left behind
        TableName=env.stack.queue_table,
        Key={"status": {"S": "SLOTS"}, "queue_key": {"S": "RUNNING"}},
        UpdateExpression="ADD holders :job",
        ExpressionAttributeValues={":job": {"SS": [job_id]}},
    )

    execution = env.stack.wait(env.request_deletion(job), timeout=60)

    assert execution.status == "SUCCEEDED"
    assert execution.path == [
        *START,
        *OBJECT_PAGE,  # 1000 keys
        *OBJECT_PAGE,  # the last 4
        *NO_OBJECTS,
        *COST_PAGE,
        *COST_PAGE,
        *COST_PAGE,  # 25 + 25 + 10
        *NO_COSTS,
        *LEFTOVERS,
        "Record leftover slot released",
        "Delete the job item and release its template",
        "Emit job deleted",
    ]
    assert object_keys(env, prefix) == []
    for neighbour in neighbours:
        assert object_keys(env, neighbour) == [neighbour]
    assert cost_records(env, job_id) == []
    assert len(cost_records(env, "another-job")) == 3
    assert not env.queue_item_exists(job)
    assert job_id not in env.slot_holders()
    assert env.job(job_id) == {}
    assert env.job_refs(job["template_id"]) == 0
    events = env.events(job_id, expected=1)
    assert events == [JobDeleted(job_id=job_id, user_id=job["user_id"])]


def test_rerun_after_a_failure_half_way_through_the_objects_finishes_the_job(env: Env) -> None:
    job = finished_job(env, "FAILED")
    prefix = f"jobs/{job['job_id']}/"
    put_objects(env, [f"{prefix}outputs/part-{i:05d}.jsonl" for i in range(1001)])
    put_cost_records(env, job["job_id"], 30)

    first = env.stack.wait(env.request_deletion(job, test_case="SecondObjectPageFails"), timeout=60)

    assert first.status == "FAILED"
    assert first.path == [*START, *OBJECT_PAGE, *OBJECT_PAGE[:3]]
    assert len(first.failures("Delete the page of job objects")) == 6  # the attempt and its 5 retries
    assert len(object_keys(env, prefix)) == 1
    assert env.job(job["job_id"])["status"] == "FAILED"
    assert env.events(job["job_id"], expected=0, timeout=0.5) == []

    second = env.stack.wait(env.request_deletion(job), timeout=60)

    assert second.status == "SUCCEEDED"
    assert second.path == [
        *START,
        *OBJECT_PAGE,
        *NO_OBJECTS,
        *COST_PAGE,
        *COST_PAGE,
        *NO_COSTS,
        *LEFTOVERS,
        "Delete the job item and release its template",
        "Emit job deleted",
    ]
    assert object_keys(env, prefix) == []
    assert cost_records(env, job["job_id"]) == []
    assert env.job(job["job_id"]) == {}
    assert [type(e) for e in env.events(job["job_id"], expected=1)] == [JobDeleted]


def test_rerun_after_the_job_item_delete_failed_and_again_after_success(env: Env) -> None:
    job = finished_job(env, "CANCELLED")
    put_objects(env, [f"jobs/{job['job_id']}/checkpoint.json"])
    put_cost_records(env, job["job_id"], 2)

    first = env.stack.wait(env.request_deletion(job, test_case="JobItemDeleteFails"))
    assert first.status == "FAILED"
    assert first.path[-1] == "Delete the job item and release its template"
    assert env.job(job["job_id"])["status"] == "CANCELLED"  # everything else is already gone
    assert env.job_refs(job["template_id"]) == 1  # the transaction never ran

    second = env.stack.wait(env.request_deletion(job))
    assert second.path == [
        *START,
        *NO_OBJECTS,
        *NO_COSTS,
        *LEFTOVERS,
        "Delete the job item and release its template",
        "Emit job deleted",
    ]
    assert env.job(job["job_id"]) == {}
    assert env.job_refs(job["template_id"]) == 0

    # A replayed deletion request finds nothing left to delete and still ends cleanly.
    third = env.stack.wait(env.request_deletion(job))
    assert third.status == "SUCCEEDED"
    assert third.path == [*START, *NO_OBJECTS, *NO_COSTS, "Emit job deleted"]
    assert env.job_refs(job["template_id"]) == 0


def test_cleanup_retries_transient_errors(env: Env) -> None:
    job = finished_job(env)
    put_objects(env, [f"jobs/{job['job_id']}/outputs/part-00000.jsonl"])
    put_cost_records(env, job["job_id"], 1)

    execution = env.stack.wait(env.request_deletion(job, test_case="TransientErrors"))

    assert execution.status == "SUCCEEDED"
    assert execution.path == [
        *START,
        *OBJECT_PAGE,
        *NO_OBJECTS,
        *COST_PAGE,
        *NO_COSTS,
        *LEFTOVERS,
        "Delete the job item and release its template",
        "Emit job deleted",
    ]
    assert [f["error"] for f in execution.failures("List a page of job objects")] == ["S3.SlowDownException"]
    assert [f["error"] for f in execution.failures("Delete the page of job objects")] == [
        "S3.SlowDownException"
    ]
    assert [f["error"] for f in execution.failures("Delete the page of cost records")] == [
        "DynamoDb.ThrottlingException"
    ]
    assert env.job(job["job_id"]) == {}


def test_a_job_that_is_not_terminal_is_not_cleaned_up(env: Env) -> None:
    job = env.create_job()
    put_objects(env, [f"jobs/{job['job_id']}/checkpoint.json"])

    execution = env.stack.wait(env.request_deletion(job))

    assert execution.status == "FAILED"
    assert execution.path == [*START, "Job is not in a terminal status"]
    assert execution.description["error"] == "JobNotTerminal"
    assert env.job(job["job_id"])["status"] == "QUEUED"
    assert object_keys(env, f"jobs/{job['job_id']}/") == [f"jobs/{job['job_id']}/checkpoint.json"]


# ------------------------------------------------------------------ the template's job_refs counter


def test_the_counter_drops_exactly_once_across_a_rerun_after_a_failure_past_the_job_delete(
    env: Env,
) -> None:
    job = finished_job(env)
    sibling = env.create_job(template_id=job["template_id"])  # another job of the same template
    assert env.job_refs(job["template_id"]) == 2

    first = env.stack.wait(env.request_deletion(job, test_case="EmitJobDeletedFails"))

    assert first.status == "FAILED"
    assert first.path == [*START, *NO_OBJECTS, *NO_COSTS, *LEFTOVERS, DELETE_JOB, "Emit job deleted"]
    assert env.job(job["job_id"]) == {}
    assert env.job_refs(job["template_id"]) == 1

    second = env.stack.wait(env.request_deletion(job))

    assert second.status == "SUCCEEDED"
    assert second.path == [*START, *NO_OBJECTS, *NO_COSTS, "Emit job deleted"]
    assert env.job_refs(job["template_id"]) == 1  # the sibling's reference stays
    assert env.job(sibling["job_id"])["status"] == "QUEUED"
    assert [type(e) for e in env.events(job["job_id"], expected=1)] == [JobDeleted]


def test_a_job_deleted_between_the_read_and_the_transaction_is_skipped(env: Env) -> None:
    """The transaction is cancelled on its first item (the job is gone): nothing is subtracted."""
    env.client("dynamodb").put_item(
        TableName=env.stack.templates_table,
        Item={
            "template_id": {"S": MOCKED_READ_TEMPLATE},
            "version": {"N": "0"},
            "latest_version": {"N": "1"},
            "job_refs": {"N": "1"},
        },
    )
    gone = {"job_id": "deleted-meanwhile", "user_id": "user-gone"}

    execution = env.stack.wait(env.request_deletion(gone, test_case="JobGoneBeforeItsDelete"))

    assert execution.status == "SUCCEEDED"
    assert execution.path == [
        *START,
        *NO_OBJECTS,
        *NO_COSTS,
        *LEFTOVERS,
        DELETE_JOB,
        WHY_CANCELLED,
        "Emit job deleted",
    ]
    (failure,) = execution.failures(DELETE_JOB)
    assert failure["error"] == "DynamoDb.TransactionCanceledException"
    assert "[ConditionalCheckFailed, None]" in failure["cause"]
    assert env.job_refs(MOCKED_READ_TEMPLATE) == 1


def test_a_job_whose_template_head_is_gone_is_deleted_alone(env: Env) -> None:
    """Data from before job_refs: the head was deleted while the job existed."""
    job = finished_job(env)
    env.client("dynamodb").delete_item(
        TableName=env.stack.templates_table,
        Key={"template_id": {"S": job["template_id"]}, "version": {"N": "0"}},
    )

    execution = env.stack.wait(env.request_deletion(job))

    assert execution.status == "SUCCEEDED"
    assert execution.path == [
        *START,
        *NO_OBJECTS,
        *NO_COSTS,
        *LEFTOVERS,
        DELETE_JOB,
        WHY_CANCELLED,
        "Delete the job item of a deleted template",
        "Emit job deleted",
    ]
    (failure,) = execution.failures(DELETE_JOB)
    assert "[None, ConditionalCheckFailed]" in failure["cause"]
    assert env.job(job["job_id"]) == {}
    assert env.job_refs(job["template_id"]) is None  # the update did not bring the head back
    assert [type(e) for e in env.events(job["job_id"], expected=1)] == [JobDeleted]
