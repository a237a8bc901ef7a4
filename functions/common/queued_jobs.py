"""Each user's QUEUED jobs: one item of the Queue table, counted by the per-user queued quota.

Key ``status = "USER_QUEUED"``, ``queue_key = {user_id}``; attribute ``job_ids`` (SS), the ids of
the user's jobs whose status is QUEUED (docs/data-model.md, "Queue table"). The Queue table holds
bookkeeping items already (the SLOTS item) and has no stream, so the item triggers nothing, and the
reconciler lists every user's item with one Query of the ``USER_QUEUED`` partition.

- The jobs API's create transaction adds the new id on condition
  ``attribute_not_exists(job_ids) OR size(job_ids) < :max``: concurrent creates are serialized on
  the item, so they can never pass the quota together, and a refused create writes nothing.
- A job leaves the set when it leaves QUEUED (promoted to RUNNING, cancelled, failed, deleted): the
  promoter removes it when the Jobs stream shows it (``forget``, condition ``contains``, so a replay
  or a retry is a no-op) and the reconciler removes ids the stream missed.

Both emulators behave here as DynamoDB does (measured on moto 5.2.5 and MiniStack 1.5.33): ``size()``
of a string set in a transaction's condition, ``ADD``/``DELETE`` of a set in a transaction, each
failed condition of a cancelled transaction reported, a set emptied by ``DELETE`` removed from the
item, and an ``UpdateItem`` on a missing item creating it with its key (hence the conditions).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from functions.common.dynamo import error_code, to_attribute

USER_QUEUED_PARTITION = "USER_QUEUED"
JOB_IDS = "job_ids"


def user_queued_key(user_id: str) -> dict[str, Any]:
    return {"status": to_attribute(USER_QUEUED_PARTITION), "queue_key": to_attribute(user_id)}


def admit_item(queue_table: str, user_id: str, job_id: str, max_queued: int) -> dict[str, Any]:
    """The transaction item that counts a new job in its user's set, or fails when it is full."""
    return {
        "Update": {
            "TableName": queue_table,
            "Key": user_queued_key(user_id),
            "UpdateExpression": "ADD #ids :job",
            "ConditionExpression": "attribute_not_exists(#ids) OR size(#ids) < :max",
            "ExpressionAttributeNames": {"#ids": JOB_IDS},
            "ExpressionAttributeValues": {":job": {"SS": [job_id]}, ":max": to_attribute(max_queued)},
        }
    }


def forget(dynamodb: Any, queue_table: str, user_id: str, job_id: str) -> bool:
    """Remove ``job_id`` from its user's set; False when it was not there (idempotent)."""
    try:
        dynamodb.update_item(
            TableName=queue_table,
            Key=user_queued_key(user_id),
            UpdateExpression="DELETE #ids :job",
            ConditionExpression="contains(#ids, :job_id)",
            ExpressionAttributeNames={"#ids": JOB_IDS},
            ExpressionAttributeValues={":job": {"SS": [job_id]}, ":job_id": to_attribute(job_id)},
        )
    except ClientError as error:
        if error_code(error) == "ConditionalCheckFailedException":
            return False
        raise
    return True
