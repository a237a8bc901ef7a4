"""Helpers for the jobs and dashboard tests: templates, seed uploads and jobs as the real code writes them.

Templates are written through ``functions.templates.repository.TemplateRepository`` (the rows of
docs/data-model.md); jobs are created through the jobs handler, so every row a test reads was
written by production code. Only lifecycle fields (status after QUEUED, cost rollups) are set
directly, the way the state machines and the rollup write them.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from functions.common import settings as s
from functions.common.clock import now_iso
from functions.jobs.handler import lambda_handler as jobs_handler
from functions.templates.models import TemplateDefinition, TemplateStep, TemplateVersion
from functions.templates.repository import TemplateRepository
from tests.support.http import ApiClient

JOBS_TABLE = s.JobsTableSettings().jobs_table
QUEUE_TABLE = s.QueueTableSettings().queue_table
TEMPLATES_TABLE = s.TemplatesTableSettings().templates_table
COST_TABLE = s.CostTrackingTableSettings().cost_tracking_table
IDEMPOTENCY_TABLE = s.IdempotencyTableSettings().idempotency_table
BUCKET = s.BucketSettings().bucket_name

jobs_api = ApiClient(jobs_handler)


def make_template(aws: Any, user: str, *, public: bool = False) -> str:
    template_id = str(uuid.uuid4())
    TemplateRepository(aws.client("dynamodb"), TEMPLATES_TABLE).create(
        TemplateVersion(
            template_id=template_id,
            version=1,
            user_id=user,
            name="authors",
            is_public=public,
            template_definition=TemplateDefinition(
                steps=[TemplateStep(id="bio", prompt="Write about {{ author.name }}")]
            ),
            schema_requirements=["author.name"],
            created_at=now_iso(),
        )
    )
    return template_id


def upload_seed(aws: Any, user: str, name: str = "authors.jsonl") -> str:
    key = f"seed-data/{user}/{name}"
    aws.client("s3").put_object(Bucket=BUCKET, Key=key, Body=b'{"author": {"name": "Ada"}}\n')
    return key


def job_body(template_id: str, seed_key: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "template_id": template_id,
        "seed_data_path": seed_key,
        "budget_limit": "25.50",
        "output_format": "JSONL",
        "num_records": 100,
    }
    body.update(overrides)
    return body


def create_job(aws: Any, user: str = "user-1", **overrides: Any) -> str:
    template_id = make_template(aws, user)
    seed_key = upload_seed(aws, user)
    answer = jobs_api.post("/jobs", user=user, body=job_body(template_id, seed_key, **overrides))
    assert answer.status == 201, answer.body
    return str(answer.body["job_id"])


def get_job_item(aws: Any, job_id: str) -> dict[str, Any] | None:
    table = aws.session.resource("dynamodb").Table(JOBS_TABLE)
    return table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")


def set_status(aws: Any, job_id: str, status: str, **extra: Any) -> None:
    """Move a job the way a state machine does: status and user_status together, plus extras."""
    item = get_job_item(aws, job_id)
    assert item is not None
    names = {"#s": "status"}
    values: dict[str, Any] = {":s": status, ":us": f"{item['user_id']}#{status}", ":now": now_iso()}
    sets = ["#s = :s", "user_status = :us", "updated_at = :now"]
    for i, (name, value) in enumerate(extra.items()):
        names[f"#x{i}"] = name
        values[f":x{i}"] = value
        sets.append(f"#x{i} = :x{i}")
    aws.session.resource("dynamodb").Table(JOBS_TABLE).update_item(
        Key={"job_id": job_id},
        UpdateExpression="SET " + ", ".join(sets),
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
    )


def roll_up(aws: Any, job_id: str, *, records: int, tokens: int, bedrock: str, fargate: str, s3: str) -> None:
    """ADD a cost delta to the Jobs item, as the cost rollup does."""
    total = Decimal(bedrock) + Decimal(fargate) + Decimal(s3)
    aws.session.resource("dynamodb").Table(JOBS_TABLE).update_item(
        Key={"job_id": job_id},
        UpdateExpression=(
            "ADD records_generated :r, tokens_used :t, #c.bedrock :b, #c.fargate :f, #c.s3 :s, #c.#t :tot"
        ),
        ExpressionAttributeNames={"#c": "cost", "#t": "total"},
        ExpressionAttributeValues={
            ":r": records,
            ":t": tokens,
            ":b": Decimal(bedrock),
            ":f": Decimal(fargate),
            ":s": Decimal(s3),
            ":tot": total,
        },
    )


def events_of(aws: Any, detail_type: str) -> list[dict[str, Any]]:
    return [e for e in aws.capture.drain() if e["detail-type"] == detail_type]
