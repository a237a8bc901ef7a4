"""POST /templates/{id}/test (the dry run) against moto: prompts, outputs, cost, estimate, errors,
isolation, the rate limit, and that it writes and emits nothing else."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.stub import Stubber

from functions.common import settings as s
from functions.common.catalogue import LLAMA_3_1_8B, LLAMA_3_1_70B
from functions.common.errors import BadRequestError, ServiceUnavailableError
from functions.common.events import EventPublisher
from functions.common.rate_limit import RateLimiter, Window
from functions.common.settings import load_settings
from functions.common.sizes import TaskSize
from functions.templates.dry_run import DryRunService, S3SeedFiles, WorkerShape
from functions.templates.handler import lambda_handler
from functions.templates.models import TemplateDefinition, TemplateVersion
from functions.templates.product_models import DryRunRequest
from functions.templates.repository import TemplateRepository
from functions.templates.service import TemplateService
from functions.worker.providers import BedrockProvider, OfflineProvider
from functions.worker.rendering import PromptRenderer
from tests.support.http import ApiClient

pytestmark = pytest.mark.integration

api = ApiClient(lambda_handler)
TEMPLATES_TABLE = s.TemplatesTableSettings().templates_table
IDEMPOTENCY_TABLE = s.IdempotencyTableSettings().idempotency_table
BUCKET = s.BucketSettings().bucket_name
OWNER, OTHER = "user-owner", "user-other"
STEPS = [
    {"id": "outline", "prompt": "Outline the life of {{ author.name }}."},
    {"id": "bio", "prompt": "Write a bio from: {{ steps.outline.output }}", "model_tier": "tier-2"},
]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The local stage's settings: the offline model; a small rate limit where a test asks for it."""
    monkeypatch.setenv("MODEL_PROVIDER", "offline")
    load_settings.cache_clear()
    yield
    load_settings.cache_clear()


def create(user: str = OWNER, *, steps: list[dict[str, Any]] | None = None, public: bool = False) -> str:
    body = {"name": "Bios", "is_public": public, "template_definition": {"steps": steps or STEPS}}
    answer = api.post("/templates", user=user, body=body)
    assert answer.status == 201, answer.body
    return str(answer.body["template_id"])


def dry_run(template_id: str, user: str = OWNER, **body: Any) -> Any:
    return api.post(f"/templates/{template_id}/test", user=user, body=body)


def upload(aws: Any, user: str, lines: list[str], name: str = "authors.jsonl") -> str:
    key = f"seed-data/{user}/{name}"
    aws.client("s3").put_object(Bucket=BUCKET, Key=key, Body="\n".join(lines).encode())
    return key


def snapshot(aws: Any) -> dict[str, Any]:
    """Every item of every table (minus rate-limit counters), every object, and the bus's events."""
    ddb = aws.client("dynamodb")
    tables = {}
    for name in ddb.list_tables()["TableNames"]:
        items = ddb.scan(TableName=name)["Items"]
        tables[name] = sorted(
            json.dumps(i, sort_keys=True)
            for i in items
            if not i.get("id", {}).get("S", "").startswith("rate-limit#")
        )
    objects = [o["Key"] for o in aws.client("s3").list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    return {"tables": tables, "objects": sorted(objects), "events": aws.capture.drain()}


# ------------------------------------------------------------------ answers


def test_dry_run_renders_each_step_calls_the_model_and_prices_the_record(aws: Any) -> None:
    template_id = create()

    answer = dry_run(template_id, seed_record={"author": {"name": "Ada Lovelace"}}, num_records=1000)

    assert answer.status == 200, answer.body
    body = answer.body
    assert (body["template_id"], body["version"], body["seed_data_path"]) == (template_id, 1, None)
    outline, bio = body["steps"]
    assert outline["prompt"] == "Outline the life of Ada Lovelace."
    assert outline["model"] == LLAMA_3_1_8B
    assert outline["output"].startswith("[offline Llama 3.1 8B Instruct ")
    assert outline["model_called"] is True
    assert outline["tokens_estimated"] is True  # the offline model counts tokens from text
    assert outline["tokens_in"] == 9  # 34 characters, 4 per token
    # The second step reads the first one's output, exactly as the worker's context has it.
    assert bio["prompt"] == "Write a bio from: " + outline["output"]
    assert bio["model"] == LLAMA_3_1_70B
    assert bio["output"].startswith("[offline Llama 3.1 70B Instruct ")
    for step, price in ((outline, Decimal("0.22")), (bio, Decimal("0.72"))):
        expected = (step["tokens_in"] + step["tokens_out"]) * price / 1_000_000
        assert Decimal(str(step["cost"])) == expected.quantize(Decimal("1e-9"))
    record = body["record"]
    assert record["tokens_in"] == outline["tokens_in"] + bio["tokens_in"]
    assert record["tokens_out"] == outline["tokens_out"] + bio["tokens_out"]
    assert Decimal(str(record["cost"])) == Decimal(str(outline["cost"])) + Decimal(str(bio["cost"]))
    estimate = body["estimate"]
    assert estimate["num_records"] == 1000
    assert Decimal(str(estimate["model_cost"])) == Decimal(str(record["cost"])) * 1000
    assert Decimal(str(estimate["total_cost"])) == Decimal(str(estimate["model_cost"])) + Decimal(
        str(estimate["fargate_cost"])
    )
    assert estimate["record_concurrency"] == 16  # one partition, MODEL_MAX_CONCURRENCY records at once
    assert any("offline model answered" in a for a in estimate["assumptions"])
    assert any("1 partition(s) of at most 1000 records" in a for a in estimate["assumptions"])


def test_dry_run_without_the_model_renders_prompts_only_and_states_what_it_assumed(aws: Any) -> None:
    template_id = create()

    answer = dry_run(template_id, seed_record={"author": {"name": "Ada"}}, call_model=False, num_records=10)

    assert answer.status == 200, answer.body
    outline, bio = answer.body["steps"]
    assert (outline["output"], outline["model_called"], outline["tokens_out"]) == (None, False, 256)
    assert bio["prompt"] == "Write a bio from: [output of step outline]"
    # 1 s + 256 tokens at 50 tokens/s per step, plus the (small) measured render time.
    assert 12.24 <= answer.body["estimate"]["seconds_per_record"] < 13
    assert any("assumed to be 256 tokens" in a for a in answer.body["estimate"]["assumptions"])


def test_dry_run_reads_a_folder_or_an_s3_uri_as_post_jobs_does(aws: Any) -> None:
    template_id = create()
    upload(aws, OWNER, ['{"author": {"name": "A0"}}', '{"author": {"name": "A1"}}'], name="dir/a.jsonl")
    upload(aws, OWNER, ['{"author": {"name": "B0"}}'], name="dir/b.jsonl")

    folder = dry_run(template_id, seed_data_path=f"seed-data/{OWNER}/dir/", record_index=2, call_model=False)
    uri = dry_run(
        template_id, seed_data_path=f"s3://{BUCKET}/seed-data/{OWNER}/dir/a.jsonl", call_model=False
    )

    assert folder.status == uri.status == 200, (folder.body, uri.body)
    assert folder.body["steps"][0]["prompt"] == "Outline the life of B0."  # the folder's third record
    assert uri.body["steps"][0]["prompt"] == "Outline the life of A0."


def test_dry_run_reads_a_record_of_your_seed_file(aws: Any) -> None:
    template_id = create()
    key = upload(aws, OWNER, [json.dumps({"author": {"name": f"Author {i}"}}) for i in range(3)])

    first = dry_run(template_id, seed_data_path=key, call_model=False)
    third = dry_run(template_id, seed_data_path=key, record_index=2, call_model=False)

    assert first.status == third.status == 200
    assert first.body["steps"][0]["prompt"] == "Outline the life of Author 0."
    assert (third.body["seed_data_path"], third.body["record_index"]) == (key, 2)
    assert third.body["steps"][0]["prompt"] == "Outline the life of Author 2."


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"record_index": 3}, 400, "has 3 records"),
        ({"seed_data_path": "seed-data/user-other/authors.jsonl"}, 403, "one of your uploads"),
        ({"seed_data_path": "s3://another-bucket/seed-data/user-owner/authors.jsonl"}, 403, "another bucket"),
        ({"seed_data_path": "seed-data/user-owner/empty/"}, 404, "Seed data not found"),
        ({"seed_data_path": "seed-data/user-owner/missing.jsonl"}, 404, "Seed data not found"),
        # Records are streamed: the first record of a file broken further down is still usable.
        ({"seed_data_path": "seed-data/user-owner/broken.jsonl", "record_index": 1}, 400, "line 2"),
    ],
)
def test_dry_run_seed_file_errors(aws: Any, body: dict[str, Any], status: int, message: str) -> None:
    template_id = create()
    key = upload(aws, OWNER, [json.dumps({"author": {"name": f"A{i}"}}) for i in range(3)])
    upload(aws, OWNER, ['{"author": {"name": "ok"}}', "{not json"], name="broken.jsonl")
    upload(aws, OTHER, ['{"author": {"name": "theirs"}}'])

    answer = dry_run(template_id, **({"seed_data_path": key} | body))

    assert answer.status == status, answer.body
    assert message in answer.body["error"]


@pytest.mark.parametrize(
    "body",
    [
        {},  # no seed at all
        {"seed_record": {"a": 1}, "seed_data_path": "seed-data/user-owner/x.jsonl"},
        {"seed_record": {"a": 1}, "record_index": 1},
        {"seed_record": {"a": "x" * 300_000}},
        {"seed_record": {"a": 1}, "num_records": 0},
        {"seed_record": {"a": 1}, "surprise": True},
    ],
)
def test_dry_run_refuses_a_malformed_request(aws: Any, body: dict[str, Any]) -> None:
    answer = dry_run(create(), **body)
    assert answer.status == 400, answer.body


# ------------------------------------------------------------------ render errors


@pytest.mark.parametrize(
    ("prompt", "line", "message"),
    [
        ("Hello {{ author.name }}\nAbout:\n{{ author.missing_field }}", 3, "missing_field"),
        # Seed-dependent: a constant bomb is refused at create already (issue 14).
        ("x\n{{ author.name * 10000000 }}", 2, "size limit"),
        ("{% for i in range(10) %}\n{{ i }}{{ author.books[i] }}\n{% endfor %}", 2, "books"),
    ],
)
def test_a_render_error_is_a_400_naming_the_step_and_the_line(
    aws: Any, prompt: str, line: int, message: str
) -> None:
    template_id = create(steps=[{"id": "first", "prompt": "fine"}, {"id": "broken", "prompt": prompt}])

    answer = dry_run(template_id, seed_record={"author": {"name": "Ada"}})

    assert answer.status == 400, answer.body
    assert answer.body["details"] == {"step": "broken", "line": line}
    assert answer.body["error"].startswith(f"Step 'broken', line {line}: ")
    assert message in answer.body["error"]


def test_a_step_whose_model_is_unknown_is_a_400_naming_the_step(aws: Any) -> None:
    """A version stored before the catalogue checked models (creates refuse them now)."""
    template_id = "old-template"
    TemplateRepository(aws.client("dynamodb"), TEMPLATES_TABLE).create(
        TemplateVersion(
            template_id=template_id,
            version=1,
            user_id=OWNER,
            name="old",
            template_definition=TemplateDefinition.model_validate(
                {"steps": [{"id": "mystery", "prompt": "x", "model": "no.such-model-v9"}]}
            ),
            created_at="2026-01-01T00:00:00.000Z",
        )
    )
    answer = dry_run(template_id, seed_record={})
    assert answer.status == 400, answer.body
    assert answer.body["details"] == {"step": "mystery"}
    assert "no.such-model-v9" in answer.body["error"]


def test_a_sandbox_escape_is_refused_like_the_worker_refuses_it(aws: Any) -> None:
    # Through a seed field: a closed escape ({{ cycler.__init__... }}) is refused at create already.
    template_id = create(steps=[{"id": "evil", "prompt": "{{ author.name.__class__.__mro__ }}"}])
    answer = dry_run(template_id, seed_record={"author": {"name": "Ada"}})
    assert answer.status == 400
    assert answer.body["details"]["step"] == "evil"


# ------------------------------------------------------------------ isolation


def test_dry_run_of_others_templates_follows_the_read_rule(aws: Any) -> None:
    private = create(user=OWNER)
    public = create(user=OWNER, public=True)
    seed = {"seed_record": {"author": {"name": "Ada"}}}

    assert dry_run(private, user=OTHER, **seed).status == 403
    assert dry_run(public, user=OTHER, **seed).status == 200
    assert dry_run("no-such-template", user=OTHER, **seed).status == 404
    assert dry_run(public, user=OTHER, version=2, **seed).status == 404
    assert api.post(f"/templates/{public}/test", user=None, body=seed).status == 401


def test_dry_run_takes_the_version_asked_for(aws: Any) -> None:
    template_id = create()
    api.put(
        f"/templates/{template_id}",
        user=OWNER,
        body={"template_definition": {"steps": [{"id": "v2", "prompt": "Second {{ author.name }}"}]}},
    )
    seed = {"author": {"name": "Ada"}}
    assert [s["id"] for s in dry_run(template_id, seed_record=seed).body["steps"]] == ["v2"]
    assert [s["id"] for s in dry_run(template_id, seed_record=seed, version=1).body["steps"]] == [
        "outline",
        "bio",
    ]


# ------------------------------------------------------------------ no side effects, rate limit


def test_dry_run_writes_nothing_and_emits_nothing_but_its_rate_limit_counter(aws: Any) -> None:
    template_id = create()
    key = upload(aws, OWNER, ['{"author": {"name": "Ada"}}'])
    before = snapshot(aws)

    assert dry_run(template_id, seed_record={"author": {"name": "Ada"}}).status == 200
    assert dry_run(template_id, seed_data_path=key).status == 200
    assert dry_run(template_id, seed_record={}).status == 400  # a render error

    after = snapshot(aws)
    assert after["tables"] == before["tables"]
    assert after["objects"] == before["objects"]
    assert after["events"] == []
    counters = aws.client("dynamodb").scan(TableName=IDEMPOTENCY_TABLE)["Items"]
    assert {int(c["request_count"]["N"]) for c in counters} == {3}
    assert len(counters) == 2  # this minute's and this day's window


def test_past_the_limit_a_dry_run_is_a_429_with_retry_after_and_counts_nowhere(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRY_RUNS_PER_MINUTE", "2")
    load_settings.cache_clear()
    template_id = create()
    seed = {"author": {"name": "Ada"}}

    assert dry_run(template_id, seed_record=seed).status == 200
    assert dry_run(template_id, seed_record=seed).status == 200
    refused = dry_run(template_id, seed_record=seed)

    assert refused.status == 429
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert refused.body["details"] == {"limit": 2, "window_seconds": 60, "retry_after": retry_after}
    assert "2 per minute" in refused.body["error"]
    # Another user has a limit of their own.
    assert dry_run(create(user=OTHER), user=OTHER, seed_record=seed).status == 200
    counts = {}
    for item in aws.client("dynamodb").scan(TableName=IDEMPOTENCY_TABLE)["Items"]:
        _, scope, user, seconds, _start = item["id"]["S"].split("#")
        assert scope == "templates-test"
        counts[f"{user}/{seconds}"] = int(item["request_count"]["N"])
    assert counts == {f"{OWNER}/60": 2, f"{OWNER}/86400": 2, f"{OTHER}/60": 1, f"{OTHER}/86400": 1}


# ------------------------------------------------------------------ the service with a clock and Bedrock


class Clock:
    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def service(
    aws: Any,
    provider: Any,
    *,
    clock: Clock,
    concurrency: int = 1,
    name: str = "bedrock",
    providers: Callable[[float], Any] | None = None,
    partition_concurrency: int = 10,
) -> DryRunService:
    ddb = aws.client("dynamodb")
    return DryRunService(
        templates=TemplateService(
            repository=TemplateRepository(ddb, TEMPLATES_TABLE),
            publisher=EventPublisher(aws.client("events"), s.EventBusSettings().event_bus_name),
        ),
        seeds=S3SeedFiles(aws.client("s3"), BUCKET),
        provider=providers or (lambda seconds: provider),
        renderer=PromptRenderer(),
        limiter=RateLimiter(ddb, IDEMPOTENCY_TABLE, scope="t", windows=[Window(60, 100)]),
        worker=WorkerShape(
            record_concurrency=concurrency,
            partition_records=1000,
            partition_concurrency=partition_concurrency,
            provider_name=name,
        ),
        monotonic=clock,
    )


def test_the_estimate_divides_by_the_concurrency_and_prices_the_fargate_task(aws: Any) -> None:
    template_id = create(steps=[{"id": "one", "prompt": "Hi {{ name }}"}])
    # Every clock reading advances 0.5 s: the step takes 1 s of measured time.
    dry = service(aws, OfflineProvider(), clock=Clock(0.5), concurrency=4)

    request = DryRunRequest(seed_record={"name": "Ada"}, num_records=1000, task_size=TaskSize.LARGE)
    answer = dry.run(OWNER, template_id, request)

    assert answer.record.duration_ms == 1000
    assert answer.estimate.seconds_per_record == 1.0
    assert answer.estimate.duration_seconds == 250  # 1000 records x 1 s / 4 at a time
    # 250 s of a 1 vCPU / 2 GB Spot task: 250 x (0.01334053 + 2 x 0.00146489) / 3600.
    assert answer.estimate.fargate_cost == Decimal("0.001129883")
    assert answer.estimate.record_concurrency == 4


def test_the_estimate_runs_partitions_in_parallel_each_on_its_own_task(aws: Any) -> None:
    template_id = create(steps=[{"id": "one", "prompt": "Hi {{ name }}"}])
    dry = service(aws, OfflineProvider(), clock=Clock(0.5), partition_concurrency=2)

    request = DryRunRequest(seed_record={"name": "Ada"}, num_records=5000, task_size=TaskSize.LARGE)
    answer = dry.run(OWNER, template_id, request)

    # 5 partitions of 1000 records, 2 at a time, 1 record each: 5000 x 1 s / 2.
    assert (answer.estimate.parallel_partitions, answer.estimate.record_concurrency) == (2, 2)
    assert answer.estimate.duration_seconds == 2500
    # Two large tasks for 2500 s: 5000 x (0.01334053 + 2 x 0.00146489) / 3600.
    assert answer.estimate.fargate_cost == Decimal("0.022597653")
    assert any(
        "5 partition(s) of at most 1000 records, 2 at a time" in a for a in answer.estimate.assumptions
    )


def test_with_bedrock_tokens_come_from_its_usage_and_the_time_budget_stops_model_calls(aws: Any) -> None:
    template_id = create(steps=[{"id": f"s{i}", "prompt": f"Step {i} of {{{{ name }}}}"} for i in range(3)])
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    answer_shape = {
        "output": {"message": {"role": "assistant", "content": [{"text": "An answer."}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 11, "outputTokens": 40, "totalTokens": 51},
        "metrics": {"latencyMs": 900},
    }
    with Stubber(client) as stubber:
        # Every clock reading advances 3 s: two calls start with 19 s and 10 s of the 25 s budget
        # left; the third would have 1 s (less than 5), so it is rendered only.
        stubber.add_response("converse", answer_shape)
        stubber.add_response("converse", answer_shape)
        dry = service(aws, BedrockProvider(client, max_tokens=64), clock=Clock(3.0))

        answer = dry.run(OWNER, template_id, DryRunRequest(seed_record={"name": "Ada"}))

        stubber.assert_no_pending_responses()
    called = [(s.model_called, s.tokens_in, s.tokens_out, s.tokens_estimated) for s in answer.steps]
    assert called[:2] == [(True, 11, 40, False), (True, 11, 40, False)]
    assert called[2][0] is False
    assert answer.steps[2].output is None


@pytest.mark.parametrize(
    ("code", "error"),
    [("ValidationException", BadRequestError), ("AccessDeniedException", ServiceUnavailableError)],
)
def test_a_model_refusal_is_a_400_and_an_unavailable_model_a_503(aws: Any, code: str, error: type) -> None:
    template_id = create(steps=[{"id": "only", "prompt": "Hi"}])
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    with Stubber(client) as stubber:
        stubber.add_client_error("converse", service_error_code=code, service_message="no")
        dry = service(aws, BedrockProvider(client), clock=Clock(0.01))
        with pytest.raises(error) as raised:
            dry.run(OWNER, template_id, DryRunRequest(seed_record={}))
    assert raised.value.details == {"step": "only"}


class SlowModel:
    """Bedrock as seen through a client whose read timeout ran out (botocore raises this)."""

    def complete(self, model: Any, prompt: str, seed_record: Any) -> Any:
        raise ReadTimeoutError(
            endpoint_url="https://bedrock-runtime.us-east-1.amazonaws.com/model/x/converse"
        )


def test_each_call_gets_the_remaining_budget_and_a_timed_out_step_degrades_to_prompts_only(aws: Any) -> None:
    template_id = create(steps=[{"id": "slow", "prompt": "Hi {{ name }}"}, {"id": "after", "prompt": "x"}])
    granted: list[float] = []

    def factory(seconds: float) -> Any:
        granted.append(seconds)
        return SlowModel()

    dry = service(aws, None, clock=Clock(1.0), providers=factory)

    answer = dry.run(OWNER, template_id, DryRunRequest(seed_record={"name": "Ada"}))

    assert granted == [23.0, 20.0]  # 25 s from the first reading, minus the readings since
    assert [(s.model_called, s.output) for s in answer.steps] == [(False, None), (False, None)]
    assert answer.steps[1].prompt == "x"
    assert any(
        "did not answer within the dry run's time budget for step(s) slow, after" in a
        for a in answer.estimate.assumptions
    )
