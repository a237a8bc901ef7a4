"""Templates API against moto: every route's success and failure statuses, ownership, events."""

from __future__ import annotations

import json
from typing import Any

import pytest
from boto3.dynamodb.conditions import Key

from functions.common import settings as s
from functions.common.cursor import encode_cursor
from functions.jobs.handler import lambda_handler as jobs_handler
from functions.templates.handler import lambda_handler
from tests.support.http import ApiClient

pytestmark = pytest.mark.integration

api = ApiClient(lambda_handler)
TEMPLATES_TABLE = s.TemplatesTableSettings().templates_table
BUCKET = s.BucketSettings().bucket_name

OWNER, OTHER = "user-owner", "user-other"


def body(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "name": "Author bios",
        "description": "One bio per author",
        "template_definition": {
            "steps": [
                {"id": "outline", "prompt": "Outline {{ author.name }}'s life; {{ author['bio'] }}"},
                {
                    "id": "bio",
                    "prompt": (
                        "From {{ steps.outline.output }} write a bio mentioning "
                        "{% for b in author.books %}{{ b.title }}{% endfor %}"
                    ),
                    "model": "claude-3.5-sonnet",
                    "model_tier": "cheap",
                },
            ]
        },
    }
    value.update(overrides)
    return value


def create(user: str = OWNER, **overrides: Any) -> str:
    answer = api.post("/templates", user=user, body=body(**overrides))
    assert answer.status == 201, answer.body
    return str(answer.body["template_id"])


def template_items(aws: Any, template_id: str) -> list[dict[str, Any]]:
    table = aws.session.resource("dynamodb").Table(TEMPLATES_TABLE)
    return table.query(KeyConditionExpression=Key("template_id").eq(template_id), ConsistentRead=True)[
        "Items"
    ]


def events(aws: Any) -> list[tuple[str, dict[str, Any]]]:
    return [
        (e["detail-type"], e["detail"])
        for e in aws.capture.drain()
        if e["source"] == "plot-palette.templates"
    ]


# ------------------------------------------------------------------ create


def test_create_answers_201_with_version_1_and_requirements_and_emits_template_created(aws: Any) -> None:
    answer = api.post("/templates", user=OWNER, body=body())
    assert answer.status == 201
    template_id = answer.body["template_id"]
    assert answer.body == {
        "template_id": template_id,
        "version": 1,
        "schema_requirements": ["author.bio", "author.books", "author.name"],
    }
    assert events(aws) == [
        (
            "Template Created",
            {"template_id": template_id, "user_id": OWNER, "version": 1, "name": "Author bios"},
        )
    ]
    items = {int(i["version"]): i for i in template_items(aws, template_id)}
    assert set(items) == {0, 1}
    assert items[0]["latest_version"] == 1
    assert items[0]["owner_id"] == OWNER
    assert "public_partition" not in items[0]
    assert items[1]["template_definition"]["steps"][1]["model_tier"] == "cheap"
    assert "model" not in items[1]["template_definition"]["steps"][0]


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ({"steps": [{"id": "a", "prompt": "fine\n{% if x %}unclosed"}]}, "line 2"),
        (
            {"steps": [{"id": "a", "prompt": "{{ steps.b.output }}"}, {"id": "b", "prompt": "x"}]},
            "earlier step",
        ),
        ({"steps": []}, "1 to 10 steps"),
        ({"steps": [{"id": f"s{i}", "prompt": "x"} for i in range(11)]}, "1 to 10 steps"),
        ({"steps": [{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}]}, "more than once"),
        ({"steps": [{"id": "not an id", "prompt": "x"}]}, "identifier"),
        ({"steps": [{"id": "a", "prompt": "x" * 60_000}]}, "limit is 51200"),
    ],
)
def test_create_refuses_a_broken_definition_with_400_and_writes_nothing(
    aws: Any, definition: dict[str, Any], message: str
) -> None:
    answer = api.post("/templates", user=OWNER, body=body(template_definition=definition))
    assert answer.status == 400
    assert message in answer.body["error"]
    assert aws.client("dynamodb").scan(TableName=TEMPLATES_TABLE)["Count"] == 0
    assert events(aws) == []


@pytest.mark.parametrize(
    "payload",
    [
        {"template_definition": {"steps": [{"id": "a", "prompt": "x"}]}},  # no name
        {"name": "x"},  # no definition
        {"name": "", "template_definition": {"steps": [{"id": "a", "prompt": "x"}]}},
        {"name": "x", "template_definition": {"steps": [{"id": "a"}]}},
        {"name": "x", "template_definition": {"steps": "nope"}},
        {"name": "x", "template_definition": {"steps": [{"id": "a", "prompt": "x", "extra": 1}]}},
    ],
)
def test_create_with_a_malformed_body_is_a_400(aws: Any, payload: dict[str, Any]) -> None:
    answer = api.post("/templates", user=OWNER, body=payload)
    assert answer.status == 400
    assert answer.body["error"] == "Request validation failed"


# ------------------------------------------------------------------ models


def spec_example(model: str | None = "llama-3.1-8b", **step: Any) -> dict[str, Any]:
    """The spec's POST /templates example (Task 4)."""
    first = {"id": "question", "prompt": "Generate a question about {{ author.name }}", **step}
    if model is not None:
        first["model"] = model
    return {"name": "Test Template", "template_definition": {"steps": [first]}}


def test_the_specs_example_with_a_model_alias_is_accepted_and_stored_as_written(aws: Any) -> None:
    answer = api.post("/templates", user=OWNER, body=spec_example())
    assert answer.status == 201, answer.body
    stored = api.get(f"/templates/{answer.body['template_id']}", user=OWNER).body
    assert stored["template_definition"]["steps"][0]["model"] == "llama-3.1-8b"


@pytest.mark.parametrize(
    ("step", "field", "name"),
    [
        ({"model": "gpt-9"}, "model", "gpt-9"),
        ({"model": None, "model_tier": "tier-9"}, "model_tier", "tier-9"),
        ({"model": None, "model_tier": "llama-3.1-8b"}, "model_tier", "llama-3.1-8b"),
        ({"model": "mistral-7b", "model_tier": "gold"}, "model_tier", "gold"),
    ],
)
def test_an_unknown_model_or_tier_is_a_400_naming_the_step_and_the_known_names(
    aws: Any, step: dict[str, Any], field: str, name: str
) -> None:
    request = spec_example(**step)
    answer = api.post("/templates", user=OWNER, body=request)
    assert answer.status == 400
    assert answer.body["error"].startswith(f"Step 'question': unknown {field} {name!r}; known: ")
    assert answer.body["details"]["step"] == "question"
    assert answer.body["details"]["field"] == field
    known = answer.body["details"]["known"]
    assert {"tier-1", "premium"} <= set(known)
    if field == "model":
        assert {"llama-3.1-8b", "llama-3.1-70b", "claude-3.5-sonnet", "mistral-7b"} <= set(known)
    assert aws.client("dynamodb").scan(TableName=TEMPLATES_TABLE)["Count"] == 0
    assert events(aws) == []


def test_put_refuses_an_unknown_model_and_keeps_the_template(aws: Any) -> None:
    template_id = create()
    answer = api.put(f"/templates/{template_id}", user=OWNER, body=spec_example("llama-4-mega"))
    assert answer.status == 400
    assert "Step 'question': unknown model 'llama-4-mega'" in answer.body["error"]
    assert len(template_items(aws, template_id)) == 2  # head and version 1 only


def test_get_models_lists_the_catalogue_with_exact_prices_per_million_tokens(aws: Any) -> None:
    answer = api.get("/models", user=OWNER)
    assert answer.status == 200
    by_alias = {m["alias"]: m for m in answer.body["models"]}
    assert set(by_alias) == {"llama-3.1-8b", "llama-3.1-70b", "claude-3.5-sonnet", "mistral-7b"}
    sonnet = by_alias["claude-3.5-sonnet"]
    assert sonnet["model_id"] == "anthropic.claude-3-5-sonnet-20240620-v1:0"
    assert sonnet["tiers"] == ["tier-3", "premium"]
    assert '"input_per_million":3.00,"output_per_million":15.00}' in answer.text
    assert answer.body["tiers"]["cheap"] == "llama-3.1-8b"
    assert answer.body["default_tier"] == "tier-1"
    # Every listed name is accepted by POST /templates.
    for name in [*by_alias, *(m["model_id"] for m in by_alias.values()), *answer.body["tiers"]]:
        assert api.post("/templates", user=OWNER, body=spec_example(name)).status == 201, name


@pytest.mark.parametrize("raw", ["{not json", "[]", "null", ""])
def test_create_with_a_body_that_is_not_an_object_is_a_4xx(aws: Any, raw: str) -> None:
    answer = api.post("/templates", user=OWNER, raw_body=raw)
    assert 400 <= answer.status < 500
    assert "error" in answer.body


def test_every_route_needs_a_caller(aws: Any) -> None:
    template_id = create()
    for method, path, payload in [
        ("POST", "/templates", body()),
        ("GET", "/templates", None),
        ("GET", f"/templates/{template_id}", None),
        ("PUT", f"/templates/{template_id}", body()),
        ("DELETE", f"/templates/{template_id}", None),
        ("GET", "/models", None),
    ]:
        answer = api.request(method, path, user=None, body=payload)
        assert answer.status == 401, (method, path)
        assert answer.body == {"error": "Unauthorized"}
    assert len(template_items(aws, template_id)) == 2


# --------------------------------------------------------------------- get


def test_get_answers_the_latest_version_or_the_one_asked_for(aws: Any) -> None:
    template_id = create()
    assert (
        api.put(
            f"/templates/{template_id}",
            user=OWNER,
            body={"template_definition": {"steps": [{"id": "only", "prompt": "{{ topic }}"}]}},
        ).status
        == 200
    )

    latest = api.get(f"/templates/{template_id}", user=OWNER)
    assert latest.status == 200
    assert latest.body["version"] == 2
    assert latest.body["schema_requirements"] == ["topic"]
    assert latest.body["name"] == "Author bios"  # kept from the latest version
    assert latest.body["is_owner"] is True

    first = api.get(f"/templates/{template_id}", user=OWNER, query={"version": 1})
    assert first.status == 200
    assert first.body["version"] == 1
    assert first.body["template_definition"]["steps"][0]["id"] == "outline"
    assert first.body["schema_requirements"] == ["author.bio", "author.books", "author.name"]


def test_get_of_a_missing_template_or_version_is_a_404(aws: Any) -> None:
    template_id = create()
    assert api.get("/templates/no-such-template", user=OWNER).status == 404
    missing = api.get(f"/templates/{template_id}", user=OWNER, query={"version": 2})
    assert missing.status == 404
    assert missing.body == {"error": "Template not found"}
    assert api.get("/templates/" + "x" * 3000, user=OWNER).status == 404


@pytest.mark.parametrize("version", ["0", "-1", "abc", "1.5"])
def test_get_with_a_bad_version_is_a_400(aws: Any, version: str) -> None:
    template_id = create()
    assert api.get(f"/templates/{template_id}", user=OWNER, query={"version": version}).status == 400


def test_another_users_private_template_is_a_403_without_its_data(aws: Any) -> None:
    template_id = create()
    for query in (None, {"version": 1}):
        answer = api.get(f"/templates/{template_id}", user=OTHER, query=query)
        assert answer.status == 403
        assert answer.body == {"error": "Forbidden"}


def test_a_public_template_is_readable_by_anyone_but_not_owned(aws: Any) -> None:
    template_id = create(is_public=True)
    answer = api.get(f"/templates/{template_id}", user=OTHER)
    assert answer.status == 200
    assert answer.body["is_owner"] is False
    assert "user_id" not in answer.body


def test_making_a_template_private_hides_every_version(aws: Any) -> None:
    template_id = create(is_public=True)
    answer = api.put(f"/templates/{template_id}", user=OWNER, body={**body(), "is_public": False})
    assert answer.status == 200
    assert api.get(f"/templates/{template_id}", user=OTHER).status == 403
    # Visibility is per template (issue 14): the earlier public version is hidden too.
    assert api.get(f"/templates/{template_id}", user=OTHER, query={"version": 1}).status == 403
    head = next(i for i in template_items(aws, template_id) if i["version"] == 0)
    assert "public_partition" not in head


# --------------------------------------------------------------------- put


def test_put_writes_the_next_version_and_emits_template_version_created(aws: Any) -> None:
    template_id = create()
    aws.capture.drain()
    answer = api.put(
        f"/templates/{template_id}",
        user=OWNER,
        body={
            "name": "Renamed",
            "is_public": True,
            "template_definition": {"steps": [{"id": "one", "prompt": "{{ a.b }} {{ c }}"}]},
        },
    )
    assert answer.status == 200
    assert answer.body == {"template_id": template_id, "version": 2, "schema_requirements": ["a.b", "c"]}
    assert events(aws) == [
        ("Template Version Created", {"template_id": template_id, "user_id": OWNER, "version": 2})
    ]
    items = {int(i["version"]): i for i in template_items(aws, template_id)}
    assert set(items) == {0, 1, 2}
    assert items[0]["latest_version"] == 2
    assert items[0]["name"] == "Renamed"
    assert items[0]["public_partition"] == "PUBLIC"
    assert items[1]["name"] == "Author bios"  # versions are immutable


def test_put_by_another_user_is_a_403_and_changes_nothing(aws: Any) -> None:
    private_id = create()
    public_id = create(is_public=True)
    aws.capture.drain()
    for template_id in (private_id, public_id):
        answer = api.put(f"/templates/{template_id}", user=OTHER, body=body(name="stolen"))
        assert answer.status == 403
        assert answer.body == {"error": "Forbidden"}
        assert len(template_items(aws, template_id)) == 2
    assert events(aws) == []


def test_put_of_a_missing_template_is_a_404_and_a_broken_definition_a_400(aws: Any) -> None:
    assert api.put("/templates/nope", user=OWNER, body=body()).status == 404
    template_id = create()
    broken = body(template_definition={"steps": [{"id": "a", "prompt": "{{ x"}]})
    answer = api.put(f"/templates/{template_id}", user=OWNER, body=broken)
    assert answer.status == 400
    assert "line 1" in answer.body["error"]
    assert len(template_items(aws, template_id)) == 2


# ------------------------------------------------------------------ delete


def test_delete_removes_every_version_and_emits_template_deleted(aws: Any) -> None:
    template_id = create()
    for _ in range(2):
        assert api.put(f"/templates/{template_id}", user=OWNER, body=body()).status == 200
    aws.capture.drain()
    answer = api.delete(f"/templates/{template_id}", user=OWNER)
    assert answer.status == 200
    assert answer.body == {"message": "Template deleted", "template_id": template_id, "versions_deleted": 3}
    assert template_items(aws, template_id) == []
    assert events(aws) == [
        ("Template Deleted", {"template_id": template_id, "user_id": OWNER, "versions_deleted": 3})
    ]
    assert api.get(f"/templates/{template_id}", user=OWNER).status == 404
    assert api.delete(f"/templates/{template_id}", user=OWNER).status == 404


def test_delete_by_another_user_is_a_403(aws: Any) -> None:
    template_id = create(is_public=True)
    answer = api.delete(f"/templates/{template_id}", user=OTHER)
    assert answer.status == 403
    assert answer.body == {"error": "Forbidden"}
    assert len(template_items(aws, template_id)) == 2


def test_delete_of_a_template_a_job_uses_is_a_409(aws: Any) -> None:
    template_id = create()
    seed_key = f"seed-data/{OWNER}/authors.jsonl"
    aws.client("s3").put_object(Bucket=BUCKET, Key=seed_key, Body=b'{"author": {"name": "Ada"}}\n')
    job = ApiClient(jobs_handler).post(
        "/jobs",
        user=OWNER,
        body={
            "template_id": template_id,
            "seed_data_path": seed_key,
            "budget_limit": "10",
            "output_format": "JSONL",
            "num_records": 10,
        },
    )
    assert job.status == 201, job.body
    aws.capture.drain()
    answer = api.delete(f"/templates/{template_id}", user=OWNER)
    assert answer.status == 409
    assert "used by" in answer.body["error"]
    assert len(template_items(aws, template_id)) == 2
    assert events(aws) == []


# -------------------------------------------------------------------- list


def test_list_shows_own_templates_then_others_public_ones_never_others_private(aws: Any) -> None:
    mine_private = create(OWNER)
    mine_public = create(OWNER, is_public=True)
    theirs_public = create(OTHER, is_public=True)
    create(OTHER)  # private: never listed for OWNER
    answer = api.get("/templates", user=OWNER)
    assert answer.status == 200
    listed = [(t["template_id"], t["is_owner"]) for t in answer.body["templates"]]
    assert listed == [(mine_public, True), (mine_private, True), (theirs_public, False)]
    assert answer.body["last_key"] is None
    summary = answer.body["templates"][0]
    assert summary["latest_version"] == 1
    assert summary["name"] == "Author bios"
    assert summary["schema_requirements"] == ["author.bio", "author.books", "author.name"]


def test_list_filters_by_visibility(aws: Any) -> None:
    mine_private = create(OWNER)
    mine_public = create(OWNER, is_public=True)
    theirs_public = create(OTHER, is_public=True)
    create(OTHER)

    public = api.get("/templates", user=OWNER, query={"is_public": "true"}).body["templates"]
    assert [t["template_id"] for t in public] == [theirs_public, mine_public]  # newest first
    private = api.get("/templates", user=OWNER, query={"is_public": "false"}).body["templates"]
    assert [t["template_id"] for t in private] == [mine_private]
    assert api.get("/templates", user=OWNER, query={"is_public": "maybe"}).status == 400


def test_a_filtered_list_pages_with_its_own_cursor(aws: Any) -> None:
    private = [create(OWNER) for _ in range(3)]
    for _ in range(2):
        create(OWNER, is_public=True)
    seen: list[str] = []
    cursor = None
    while True:
        query = {"is_public": "false", "limit": 1, **({"last_key": cursor} if cursor else {})}
        page = api.get("/templates", user=OWNER, query=query).body
        seen += [t["template_id"] for t in page["templates"]]
        cursor = page["last_key"]
        if cursor is None:
            break
    assert seen == list(reversed(private))
    # A cursor of the private listing does not resume the public one.
    first = api.get("/templates", user=OWNER, query={"is_public": "false", "limit": 1}).body["last_key"]
    answer = api.get("/templates", user=OWNER, query={"is_public": "true", "last_key": first})
    assert answer.status == 400


def test_a_listed_template_carries_its_latest_versions_requirements(aws: Any) -> None:
    template_id = create()
    new = {"steps": [{"id": "a", "prompt": "{{ topic }} by {{ author.name }}"}]}
    api.put(f"/templates/{template_id}", user=OWNER, body=body(template_definition=new))
    [summary] = api.get("/templates", user=OWNER).body["templates"]
    assert summary["schema_requirements"] == ["author.name", "topic"]


def test_a_head_written_before_it_kept_the_requirements_reads_them_from_its_version(aws: Any) -> None:
    template_id = create()
    table = aws.session.resource("dynamodb").Table(TEMPLATES_TABLE)
    table.update_item(
        Key={"template_id": template_id, "version": 0}, UpdateExpression="REMOVE schema_requirements"
    )
    [summary] = api.get("/templates", user=OWNER).body["templates"]
    assert summary["schema_requirements"] == ["author.bio", "author.books", "author.name"]


def test_list_shows_the_latest_version_of_each_template(aws: Any) -> None:
    template_id = create()
    api.put(f"/templates/{template_id}", user=OWNER, body=body(name="v2"))
    [summary] = api.get("/templates", user=OWNER).body["templates"]
    assert (summary["latest_version"], summary["name"]) == (2, "v2")


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 7, 20])
def test_list_pages_across_own_and_public_templates_with_an_opaque_cursor(aws: Any, limit: int) -> None:
    own = {create(OWNER, is_public=i % 2 == 0) for i in range(4)}
    public = {create(f"author-{i}", is_public=True) for i in range(3)}
    for i in range(2):
        create(f"author-{i}")  # private, hidden
    seen: list[str] = []
    pages = 0
    cursor = None
    while True:
        answer = api.get("/templates", user=OWNER, query={"limit": limit, "last_key": cursor})
        assert answer.status == 200
        pages += 1
        page = answer.body["templates"]
        cursor = answer.body["last_key"]
        if cursor is not None:
            assert len(page) == limit  # every page but the last is full
        seen.extend(t["template_id"] for t in page)
        if cursor is None:
            break
        assert pages < 20
    assert len(seen) == len(set(seen)) == 7
    assert set(seen[:4]) == own  # own first
    assert set(seen[4:]) == public
    assert pages == -(-7 // limit)


@pytest.mark.parametrize(
    "cursor",
    [
        "not-base64!!",
        "e30",  # {}
        encode_cursor({"phase": "own", "template_id": "x"}),
        encode_cursor({"phase": "elsewhere", "template_id": "x", "updated_at": "2026"}),
        encode_cursor({"phase": "own", "template_id": "x", "updated_at": 5}),
        encode_cursor({"phase": "public", "template_id": 5, "updated_at": "x"}),
        encode_cursor({"phase": "own", "template_id": "x" * 300, "updated_at": "x"}),
        "x" * 3000,
    ],
)
def test_a_tampered_cursor_is_a_400(aws: Any, cursor: str) -> None:
    create()
    answer = api.get("/templates", user=OWNER, query={"last_key": cursor})
    assert answer.status == 400
    assert "error" in answer.body


def test_a_cursor_cannot_reach_another_users_private_templates(aws: Any) -> None:
    theirs = create(OTHER)
    create(OTHER)
    # A cursor naming the other user's template in the "own" phase still lists the caller's own.
    cursor = encode_cursor({"phase": "own", "template_id": theirs, "updated_at": "9999"})
    answer = api.get("/templates", user=OWNER, query={"last_key": cursor})
    assert answer.status == 200
    assert answer.body["templates"] == []


@pytest.mark.parametrize("limit", ["0", "101", "x"])
def test_list_limit_is_1_to_100(aws: Any, limit: str) -> None:
    assert api.get("/templates", user=OWNER, query={"limit": limit}).status == 400


def test_nothing_in_the_responses_is_another_users_id(aws: Any) -> None:
    template_id = create(OTHER, is_public=True)
    for answer in (api.get("/templates", user=OWNER), api.get(f"/templates/{template_id}", user=OWNER)):
        assert OTHER not in json.dumps(answer.body)
