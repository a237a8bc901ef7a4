"""Fixtures for the generation worker against moto: a template, a seed file, a RUNNING job and a
service wired exactly as ``functions.worker.main`` wires it (offline provider), with a stepping
monotonic clock so the Fargate share of the cost is reproducible; the work queue and a worker loop
around that service, with a reporter that remembers what it sent.

Reporting: moto's Step Functions backend accepts ``SendTaskSuccess``/``Failure``/``Heartbeat``
for any token and records nothing (its handlers are no-ops unless a real execution is waiting),
so ``RecordingReporter`` remembers what was sent and then sends it through the real
``StepFunctionsTaskReporter`` (botocore still validates the request). The reporter is not what
these tests check; the state machine tests in tests/statemachines/ cover the lifecycle's side."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from functions.common import settings as s
from functions.common.catalogue import ModelPrice
from functions.common.clock import now_iso
from functions.templates.models import TemplateDefinition, TemplateStep, TemplateVersion
from functions.templates.repository import TemplateRepository
from functions.worker.concurrency import ConcurrencyController
from functions.worker.exporters import Exporter
from functions.worker.models import OutputFormat, WorkItem
from functions.worker.pricing import FargatePrice
from functions.worker.providers import Completion, ModelProvider, OfflineProvider
from functions.worker.rendering import PromptRenderer, RenderLimits
from functions.worker.reporter import StepFunctionsTaskReporter
from functions.worker.repository import CostStore, JobStore, OutputStore, S3SeedSource
from functions.worker.runner import Progress, WorkerLoop
from functions.worker.service import GenerationService

JOBS_TABLE = s.JobsTableSettings().jobs_table
TEMPLATES_TABLE = s.TemplatesTableSettings().templates_table
COST_TABLE = s.CostTrackingTableSettings().cost_tracking_table
BUCKET = s.BucketSettings().bucket_name
USER = "user-1"

_SER = TypeSerializer()
_DES = TypeDeserializer()

AUTHORS = [
    {"author": {"name": "Ada Lovelace", "field": "mathematics"}},
    {"author": {"name": "Octavia Butler", "field": "fiction"}},
    {"author": {"name": "Alan Turing", "field": "computing"}},
]
ONE_STEP = [{"id": "bio", "prompt": "Write a short biography of {{ author.name }} ({{ author.field }})."}]
TWO_STEPS = [
    {"id": "draft", "prompt": "Write a story about {{ author.name }}.", "model_tier": "cheap"},
    {
        "id": "summary",
        "prompt": "Summarize in one line: {{ steps.draft.output }}",
        "model": "anthropic.claude-3-5-sonnet-20240620-v1:0",
    },
]


class SteppingClock:
    """``time.monotonic`` stand-in: every reading is one second after the previous one."""

    def __init__(self) -> None:
        self._ticks = itertools.count()

    def __call__(self) -> float:
        return float(next(self._ticks))


def plain(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _DES.deserialize(v) for k, v in item.items()}


@dataclass
class World:
    """The moto account plus helpers to make jobs and read back what the worker wrote."""

    session: Any
    ddb: Any = field(init=False)
    s3: Any = field(init=False)

    def __post_init__(self) -> None:
        self.ddb = self.session.client("dynamodb")
        self.s3 = self.session.client("s3")

    # ---------------------------------------------------------------- setup

    def put_template(self, steps: list[dict[str, Any]]) -> str:
        template_id = str(uuid.uuid4())
        TemplateRepository(self.ddb, TEMPLATES_TABLE).create(
            TemplateVersion(
                template_id=template_id,
                version=1,
                user_id=USER,
                name="worker test",
                template_definition=TemplateDefinition(steps=[TemplateStep(**step) for step in steps]),
                created_at=now_iso(),
            )
        )
        return template_id

    def put_seed(self, records: list[dict[str, Any]], name: str = "authors.jsonl") -> str:
        key = f"seed-data/{USER}/{uuid.uuid4().hex}-{name}"
        if name.endswith(".json"):
            body = json.dumps(records)
        else:
            body = "".join(json.dumps(r) + "\n" for r in records)
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode())
        return key

    def make_job(
        self,
        *,
        num_records: int,
        batch_size: int,
        output_format: OutputFormat = OutputFormat.JSONL,
        steps: list[dict[str, Any]] | None = None,
        seeds: list[dict[str, Any]] | None = None,
        budget_limit: Decimal = Decimal(100),
        status: str = "RUNNING",
        template_id: str | None = None,
        seed_data_path: str | None = None,
    ) -> WorkItem:
        """A job as the API and the lifecycle leave it (RUNNING) and the work item it is sent."""
        job_id = str(uuid.uuid4())
        template_id = template_id or self.put_template(steps or ONE_STEP)
        seed_data_path = seed_data_path or self.put_seed(seeds or AUTHORS)
        created = now_iso()
        item = {
            "job_id": job_id,
            "user_id": USER,
            "status": status,
            "user_status": f"{USER}#{status}",
            "template_id": template_id,
            "template_version": 1,
            "seed_data_path": seed_data_path,
            "budget_limit": budget_limit,
            "output_format": output_format.value,
            "num_records": num_records,
            "priority": 5,
            "created_at": created,
            "updated_at": created,
            "records_generated": 0,
            "tokens_used": 0,
            "cost": {"bedrock": Decimal(0), "fargate": Decimal(0), "s3": Decimal(0), "total": Decimal(0)},
        }
        self.ddb.put_item(TableName=JOBS_TABLE, Item={k: _SER.serialize(v) for k, v in item.items()})
        return WorkItem(
            job_id=job_id,
            user_id=USER,
            task_token=f"token-{job_id}",
            template_id=template_id,
            template_version=1,
            seed_data_path=seed_data_path,
            output_format=output_format,
            num_records=num_records,
            batch_size=batch_size,
        )

    def update_job(self, job_id: str, expression: str, values: dict[str, Any]) -> None:
        self.ddb.update_item(
            TableName=JOBS_TABLE,
            Key={"job_id": {"S": job_id}},
            UpdateExpression=expression,
            ExpressionAttributeValues={k: _SER.serialize(v) for k, v in values.items()},
        )

    def request_cancel(self, job_id: str) -> None:
        """What the API's DELETE writes on a RUNNING job."""
        self.update_job(job_id, "SET cancel_requested_at = :now, updated_at = :now", {":now": now_iso()})

    # ------------------------------------------------------------- read back

    def job(self, job_id: str) -> dict[str, Any]:
        return plain(self.ddb.get_item(TableName=JOBS_TABLE, Key={"job_id": {"S": job_id}})["Item"])

    def deltas(self, job_id: str) -> list[dict[str, Any]]:
        answer = self.ddb.query(
            TableName=COST_TABLE,
            KeyConditionExpression="job_id = :j",
            ExpressionAttributeValues={":j": {"S": job_id}},
            ConsistentRead=True,
        )
        return [plain(item) for item in answer["Items"]]

    def keys(self, prefix: str) -> list[str]:
        answer = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return sorted(obj["Key"] for obj in answer.get("Contents", []))

    def parts(self, job_id: str) -> list[str]:
        return self.keys(f"jobs/{job_id}/outputs/")

    def read_jsonl(self, key: str) -> list[dict[str, Any]]:
        body = self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
        return [json.loads(line) for line in body.splitlines() if line.strip()]

    def part_records(self, job_id: str) -> list[dict[str, Any]]:
        return [record for key in self.parts(job_id) for record in self.read_jsonl(key)]

    def total_cost(self, job_id: str) -> dict[str, Any]:
        totals: dict[str, Any] = {"tokens_in": 0, "tokens_out": 0, "records": 0}
        money = {"bedrock": Decimal(0), "fargate": Decimal(0), "s3": Decimal(0)}
        for delta in self.deltas(job_id):
            for name in totals:
                totals[name] += int(delta[name])
            for name in money:
                money[name] += delta["cost"][name]
        return totals | money


@pytest.fixture
def world(aws: Any) -> World:
    return World(session=aws.session)


ServiceFactory = Callable[..., GenerationService]


@pytest.fixture
def make_service(world: World) -> ServiceFactory:
    """A service wired like ``functions.worker.main.build_worker``; collaborators can be swapped."""

    def build(
        *,
        provider: ModelProvider | None = None,
        outputs: OutputStore | None = None,
        costs: CostStore | None = None,
        limits: RenderLimits | None = None,
        monotonic: Callable[[], float] | None = None,
        on_progress: Callable[[], None] = lambda: None,
        on_batch: Callable[[], None] = lambda: None,
        calls: ConcurrencyController | None = None,
    ) -> GenerationService:
        ddb, s3 = world.session.client("dynamodb"), world.session.client("s3")
        outputs = outputs or OutputStore(s3, BUCKET)
        return GenerationService(
            jobs=JobStore(ddb, JOBS_TABLE),
            costs=costs or CostStore(ddb, COST_TABLE),
            outputs=outputs,
            seeds=S3SeedSource(s3, BUCKET),
            templates=TemplateRepository(ddb, TEMPLATES_TABLE),
            provider=provider or OfflineProvider(),
            renderer=PromptRenderer(limits or RenderLimits(max_output_chars=20_000, max_seconds=0.5)),
            exporter=Exporter(outputs),
            fargate=FargatePrice.for_task(1024, 2048),
            monotonic=monotonic or SteppingClock(),
            on_progress=on_progress,
            on_batch=on_batch,
            calls=calls,
        )

    return build


def record_id_list(job_id: str, count: int) -> list[str]:
    from functions.worker.service import record_id

    return [record_id(job_id, position) for position in range(count)]


def start(world: World, item: WorkItem) -> Any:
    """Record the task token as the runner does and answer the job's control view."""
    control = JobStore(world.ddb, JOBS_TABLE).record_task_token(item.job_id, item.task_token, now_iso())
    assert control is not None
    assert control.running
    return control


# ------------------------------------------------------------- the worker loop


class RecordingReporter:
    def __init__(self, inner: Any, heartbeat_error: Exception | None = None) -> None:
        self._inner = inner
        self.sent: list[tuple[str, str, Any]] = []
        self._heartbeat_error = heartbeat_error

    def heartbeat(self, task_token: str) -> None:
        self.sent.append(("heartbeat", task_token, None))
        if self._heartbeat_error:
            raise self._heartbeat_error
        self._inner.heartbeat(task_token)

    def success(self, task_token: str, output: dict[str, Any]) -> None:
        self.sent.append(("success", task_token, output))
        self._inner.success(task_token, output)

    def failure(self, task_token: str, error: str, cause: str) -> None:
        self.sent.append(("failure", task_token, (error, cause)))
        self._inner.failure(task_token, error, cause)

    def answers(self) -> list[tuple[str, str, Any]]:
        return [s for s in self.sent if s[0] != "heartbeat"]


class HookedProvider:
    """The offline provider with a hook before each call (how tests act mid-batch)."""

    def __init__(self, hook: Any) -> None:
        self.calls = 0
        self._hook = hook
        self._inner = OfflineProvider()

    def complete(self, model: ModelPrice, prompt: str, seed_record: Mapping[str, Any]) -> Completion:
        self.calls += 1
        self._hook(self.calls)
        return self._inner.complete(model, prompt, seed_record)


@pytest.fixture
def queue(aws: Any) -> tuple[Any, str]:
    sqs = aws.session.client("sqs")
    return sqs, sqs.create_queue(QueueName="plot-palette-work")["QueueUrl"]


def make_loop(
    world: World,
    queue: tuple[Any, str],
    service: Any,
    reporter: RecordingReporter | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> tuple[WorkerLoop, RecordingReporter]:
    sqs, url = queue
    reporter = reporter or RecordingReporter(StepFunctionsTaskReporter(world.session.client("stepfunctions")))
    loop = WorkerLoop(
        sqs=sqs,
        queue_url=url,
        jobs=JobStore(world.ddb, JOBS_TABLE),
        reporter=reporter,
        service=service,
        progress=progress or Progress(),
        poll_wait_seconds=0,
        **options,
    )
    return loop, reporter


def send(queue: tuple[Any, str], item: WorkItem | dict[str, Any]) -> None:
    sqs, url = queue
    body = item.model_dump_json() if isinstance(item, WorkItem) else json.dumps(item)
    sqs.send_message(QueueUrl=url, MessageBody=body)


def visible_messages(queue: tuple[Any, str]) -> list[dict[str, Any]]:
    sqs, url = queue
    return sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
