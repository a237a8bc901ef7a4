"""Versions, marketplace, fork and YAML export/import against moto, through the templates handler."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import yaml
from boto3.dynamodb.conditions import Key

from functions.common import settings as s
from functions.common.cursor import encode_cursor
from functions.common.errors import NotFoundError
from functions.common.events import EventPublisher
from functions.templates.handler import lambda_handler
from functions.templates.models import CreateTemplateRequest, ForkedFrom, TemplateDefinition
from functions.templates.portable import MAX_IMPORT_BYTES
from functions.templates.repository import TemplateRepository
from functions.templates.service import TemplateService
from tests.integration.jobs.support import job_body, jobs_api, upload_seed
from tests.support.conflicts import ConflictsFirst
from tests.support.http import ApiClient, LambdaContext, build_event

pytestmark = pytest.mark.integration

api = ApiClient(lambda_handler)
TEMPLATES_TABLE = s.TemplatesTableSettings().templates_table
OWNER, OTHER = "user-owner", "user-other"
STEPS = [
    {"id": "outline", "prompt": "Outline {{ author.name }}'s life.\nKeep it short."},
    {"id": "bio", "prompt": "From {{ steps.outline.output }} write a bio", "model_tier": "tier-2"},
]


def create(user: str = OWNER, *, name: str = "Author bios", public: bool = False, **extra: Any) -> str:
    body = {
        "name": name,
        "description": extra.pop("description", "One bio per author"),
        "is_public": public,
        "template_definition": {"steps": extra.pop("steps", STEPS)},
    }
    answer = api.post("/templates", user=user, body=body)
    assert answer.status == 201, answer.body
    return str(answer.body["template_id"])


def update(template_id: str, user: str = OWNER, **fields: Any) -> int:
    body = {"template_definition": {"steps": fields.pop("steps", STEPS)}, **fields}
    answer = api.put(f"/templates/{template_id}", user=user, body=body)
    assert answer.status == 200, answer.body
    return int(answer.body["version"])


def head(aws: Any, template_id: str) -> dict[str, Any]:
    table = aws.session.resource("dynamodb").Table(TEMPLATES_TABLE)
    item: dict[str, Any] = table.get_item(
        Key={"template_id": template_id, "version": 0}, ConsistentRead=True
    )["Item"]
    return item


def template_events(aws: Any) -> list[tuple[str, dict[str, Any]]]:
    return [
        (e["detail-type"], e["detail"])
        for e in aws.capture.drain()
        if e["source"] == "plot-palette.templates"
    ]


# ---------------------------------------------------------------- versions


def test_versions_lists_every_version_newest_first_with_its_fields(aws: Any) -> None:
    template_id = create()
    update(template_id, name="Bios v2", steps=[{"id": "only", "prompt": "{{ topic }}"}])
    update(template_id, is_public=True, description="Now public")

    answer = api.get(f"/templates/{template_id}/versions", user=OWNER)

    assert answer.status == 200, answer.body
    assert answer.body["template_id"] == template_id
    assert answer.body["last_key"] is None
    versions = answer.body["versions"]
    assert [v["version"] for v in versions] == [3, 2, 1]
    assert versions[0] == {
        "version": 3,
        "name": "Bios v2",
        "description": "Now public",
        "is_public": True,
        "schema_requirements": ["author.name"],
        "created_at": versions[0]["created_at"],
    }
    assert versions[1]["schema_requirements"] == ["topic"]
    assert versions[1]["is_public"] is False
    assert versions[2]["name"] == "Author bios"
    assert versions[0]["created_at"] >= versions[1]["created_at"] >= versions[2]["created_at"]


def test_versions_paginate_with_a_cursor_until_none_remain(aws: Any) -> None:
    template_id = create()
    for _ in range(4):
        update(template_id)

    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        answer = api.get(
            f"/templates/{template_id}/versions", user=OWNER, query={"limit": 2, "last_key": cursor}
        )
        assert answer.status == 200, answer.body
        seen.extend(v["version"] for v in answer.body["versions"])
        pages += 1
        cursor = answer.body["last_key"]
        if cursor is None:
            break
    assert seen == [5, 4, 3, 2, 1]
    assert pages == 3


def test_versions_of_another_users_template_show_only_public_versions_and_a_private_one_is_403(
    aws: Any,
) -> None:
    template_id = create(public=True)  # v1 public
    update(template_id, is_public=False)  # v2 private: the template is private now
    assert api.get(f"/templates/{template_id}/versions", user=OTHER).status == 403
    update(template_id, is_public=True)  # v3 public again

    answer = api.get(f"/templates/{template_id}/versions", user=OTHER)

    assert answer.status == 200
    assert [v["version"] for v in answer.body["versions"]] == [3, 1]
    assert api.get(f"/templates/{template_id}", user=OTHER, query={"version": 2}).status == 403


def test_versions_of_a_missing_template_is_404_and_a_bad_cursor_400(aws: Any) -> None:
    template_id = create()
    assert api.get("/templates/nope/versions", user=OWNER).status == 404
    assert api.get(f"/templates/{template_id}/versions", user=None).status == 401
    for cursor in ["garbage!", encode_cursor({"version": "2"}), encode_cursor({"job_id": 1})]:
        answer = api.get(f"/templates/{template_id}/versions", user=OWNER, query={"last_key": cursor})
        assert answer.status == 400, cursor
        assert answer.body == {"error": "Invalid pagination cursor"}


# -------------------------------------------------------------------- fork


def test_fork_of_a_public_template_copies_a_version_into_a_new_private_template_of_yours(aws: Any) -> None:
    source = create(public=True)
    update(source, steps=[{"id": "only", "prompt": "About {{ topic }}"}])
    aws.capture.drain()

    answer = api.post(f"/templates/{source}/fork", user=OTHER, body={"version": 1})

    assert answer.status == 201, answer.body
    fork_id = answer.body["template_id"]
    assert fork_id != source
    assert answer.body == {
        "template_id": fork_id,
        "version": 1,
        "schema_requirements": ["author.name"],
        "forked_from": {"template_id": source, "version": 1},
    }
    fork = api.get(f"/templates/{fork_id}", user=OTHER).body
    original = api.get(f"/templates/{source}", user=OWNER, query={"version": 1}).body
    assert fork["template_definition"] == original["template_definition"]
    assert fork["name"] == original["name"]
    assert fork["description"] == original["description"]
    assert fork["is_owner"] is True
    assert fork["is_public"] is False
    assert fork["forked_from"] == {"template_id": source, "version": 1}
    assert template_events(aws) == [
        (
            "Template Forked",
            {
                "template_id": fork_id,
                "user_id": OTHER,
                "version": 1,
                "name": "Author bios",
                "forked_from_template_id": source,
                "forked_from_version": 1,
            },
        )
    ]
    assert api.get(f"/templates/{fork_id}", user=OWNER).status == 403  # the fork is private


def test_fork_without_a_body_takes_the_latest_version_and_later_versions_stay_forks(aws: Any) -> None:
    source = create(user=OWNER)
    update(source, steps=[{"id": "only", "prompt": "About {{ topic }}"}])

    answer = api.post(f"/templates/{source}/fork", user=OWNER)  # your own private template

    assert answer.status == 201, answer.body
    fork_id = answer.body["template_id"]
    assert answer.body["forked_from"] == {"template_id": source, "version": 2}
    assert answer.body["schema_requirements"] == ["topic"]
    update(fork_id, name="Mine now")
    assert api.get(f"/templates/{fork_id}", user=OWNER).body["forked_from"] == {
        "template_id": source,
        "version": 2,
    }


def test_fork_takes_name_description_and_visibility_from_the_body(aws: Any) -> None:
    source = create(public=True)
    answer = api.post(
        f"/templates/{source}/fork",
        user=OTHER,
        body={"name": "My bios", "description": "tweaked", "is_public": True},
    )
    assert answer.status == 201
    fork = api.get(f"/templates/{answer.body['template_id']}", user=OWNER).body  # public: readable
    assert (fork["name"], fork["description"], fork["is_public"]) == ("My bios", "tweaked", True)


def test_fork_of_another_users_private_template_is_403_and_of_a_missing_one_404(aws: Any) -> None:
    private = create(user=OWNER)
    public = create(user=OWNER, public=True)
    aws.capture.drain()
    before = aws.client("dynamodb").scan(TableName=TEMPLATES_TABLE)["Count"]

    assert api.post(f"/templates/{private}/fork", user=OTHER).status == 403
    assert api.post("/templates/no-such/fork", user=OTHER).status == 404
    assert api.post(f"/templates/{public}/fork", user=OTHER, body={"version": 9}).status == 404
    assert api.post(f"/templates/{public}/fork", user=OTHER, body={"surprise": 1}).status == 400
    # What the schema refuses (found by the fuzz tier): not an object or null, "2", 1 for true.
    for refused in ([None, None], [], "x", {"version": "1"}, {"is_public": 1}):
        assert api.post(f"/templates/{public}/fork", user=OTHER, body=refused).status == 400, refused
    assert api.post(f"/templates/{public}/fork", user=None).status == 401

    assert aws.client("dynamodb").scan(TableName=TEMPLATES_TABLE)["Count"] == before
    assert template_events(aws) == []


def test_every_fork_and_every_job_counts_once_on_the_source_head(aws: Any) -> None:
    source = create(public=True)
    assert (head(aws, source)["popularity"], head(aws, source).get("fork_count", 0)) == (0, 0)
    for _ in range(3):
        assert api.post(f"/templates/{source}/fork", user=OTHER).status == 201
    seed = upload_seed(aws, OTHER)
    for _ in range(2):
        assert jobs_api.post("/jobs", user=OTHER, body=job_body(source, seed)).status == 201
    assert api.post(f"/templates/{source}/fork", user=OTHER, body={"version": 7}).status == 404

    item = head(aws, source)
    assert (item["fork_count"], item["job_count"], item["popularity"], item["job_refs"]) == (3, 2, 5, 2)


def test_a_fork_whose_source_is_deleted_meanwhile_is_404_and_writes_nothing(aws: Any) -> None:
    """The fork's transaction conditions on the source head: gone between read and write, nothing lands."""
    source = create(public=True)
    service = TemplateService(
        repository=TemplateRepository(aws.client("dynamodb"), TEMPLATES_TABLE),
        publisher=EventPublisher(aws.client("events"), s.EventBusSettings().event_bus_name),
    )
    request = CreateTemplateRequest(
        name="x", template_definition=TemplateDefinition.model_validate({"steps": STEPS})
    )
    assert api.delete(f"/templates/{source}", user=OWNER).status == 200
    aws.capture.drain()

    with pytest.raises(NotFoundError, match="forked from no longer exists"):
        service.create(OTHER, request, forked_from=ForkedFrom(template_id=source, version=1))

    assert aws.client("dynamodb").scan(TableName=TEMPLATES_TABLE)["Count"] == 0
    assert template_events(aws) == []


# ------------------------------------------------------------- marketplace


def market(user: str = OTHER, **query: Any) -> dict[str, Any]:
    answer = api.get("/templates/marketplace", user=user, query=query)
    assert answer.status == 200, answer.body
    body: dict[str, Any] = answer.body
    return body


def names(page: dict[str, Any]) -> list[str]:
    return [t["name"] for t in page["templates"]]


def test_marketplace_is_not_taken_for_a_template_id(aws: Any) -> None:
    """``/templates/marketplace`` and ``/templates/import`` are their own routes, not GET/PUT of an id."""
    assert api.get("/templates/marketplace", user=OTHER).body == {"templates": [], "last_key": None}
    assert api.get("/templates/import", user=OTHER).status in (404, 405)


def test_marketplace_lists_public_templates_only_with_their_latest_version(aws: Any) -> None:
    mine = create(user=OTHER, name="Mine public", public=True)
    theirs = create(user=OWNER, name="Theirs public", public=True)
    update(theirs, description="v2")
    create(user=OWNER, name="Theirs private")
    hidden = create(user=OWNER, name="Was public", public=True)
    update(hidden, is_public=False)

    page = market()

    assert sorted(names(page)) == ["Mine public", "Theirs public"]
    by_id = {t["template_id"]: t for t in page["templates"]}
    assert by_id[theirs]["version"] == 2
    assert by_id[theirs]["description"] == "v2"
    assert (by_id[theirs]["is_owner"], by_id[mine]["is_owner"]) == (False, True)
    assert by_id[mine]["popularity"] == 0


def test_marketplace_sorts_recent_popular_and_name(aws: Any) -> None:
    ids = {name: create(user=OWNER, name=name, public=True) for name in ["banana", "Apple", "cherry"]}
    update(ids["banana"])  # the most recently updated
    for _ in range(2):
        api.post(f"/templates/{ids['cherry']}/fork", user=OTHER)
    api.post(f"/templates/{ids['Apple']}/fork", user=OTHER)

    assert names(market(sort="recent"))[0] == "banana"
    assert names(market(sort="popular"))[:3] == ["cherry", "Apple", "banana"]
    assert [t["popularity"] for t in market(sort="popular")["templates"]][:3] == [2, 1, 0]
    # Name order is case-insensitive; the forks are private, so they are not listed.
    assert names(market(sort="name")) == ["Apple", "banana", "cherry"]


def test_marketplace_q_matches_name_or_description_case_insensitively(aws: Any) -> None:
    create(user=OWNER, name="Author BIOS", description="people", public=True)
    create(user=OWNER, name="Recipes", description="Dishes with a short Bio of the chef", public=True)
    create(user=OWNER, name="Poems", description="verse", public=True)
    create(user=OWNER, name="Private bios", public=False)

    assert sorted(names(market(q="bio"))) == ["Author BIOS", "Recipes"]
    assert names(market(q="  VERSE ")) == ["Poems"]
    assert names(market(q="nothing like it")) == []


def test_marketplace_pages_follow_the_cursor_in_every_sort(aws: Any) -> None:
    for i in range(7):
        create(user=OWNER, name=f"t{i}", public=True)
    for sort in ("recent", "popular", "name"):
        seen: list[str] = []
        cursor = None
        while True:
            page = market(sort=sort, limit=3, last_key=cursor)
            seen.extend(names(page))
            cursor = page["last_key"]
            if cursor is None:
                break
        assert sorted(seen) == [f"t{i}" for i in range(7)], sort
        assert len(set(seen)) == 7


def test_marketplace_refuses_a_cursor_of_another_sort_or_a_damaged_one(aws: Any) -> None:
    for i in range(3):
        create(user=OWNER, name=f"t{i}", public=True)
    cursor = market(sort="name", limit=1)["last_key"]
    assert cursor is not None
    for sort, bad in [("popular", cursor), ("name", "%%%"), ("name", encode_cursor({"sort": "name"}))]:
        answer = api.get("/templates/marketplace", user=OTHER, query={"sort": sort, "last_key": bad})
        assert answer.status == 400, (sort, bad)
    assert api.get("/templates/marketplace", user=OTHER, query={"sort": "best"}).status == 400
    assert api.get("/templates/marketplace", user=None).status == 401


# ----------------------------------------------------------- export/import


def test_export_answers_yaml_with_name_description_steps_and_requirements(aws: Any) -> None:
    template_id = create()
    answer = api.get(f"/templates/{template_id}/export", user=OWNER)

    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/yaml"
    assert f"template-{template_id}-v1.yaml" in answer.headers["Content-Disposition"]
    document = yaml.safe_load(answer.body)
    assert document == {
        "name": "Author bios",
        "description": "One bio per author",
        "steps": STEPS,
        "schema_requirements": ["author.name"],
    }
    assert "prompt: |" in answer.body  # multi-line prompts read as blocks


def test_export_of_another_users_private_template_is_403_and_missing_404(aws: Any) -> None:
    private = create(user=OWNER)
    public = create(user=OWNER, public=True)
    assert api.get(f"/templates/{private}/export", user=OTHER).status == 403
    assert api.get(f"/templates/{public}/export", user=OTHER).status == 200
    assert api.get(f"/templates/{public}/export", user=OTHER, query={"version": 3}).status == 404
    assert api.get("/templates/nope/export", user=OTHER).status == 404
    assert api.get(f"/templates/{public}/export", user=None).status == 401


def import_yaml(text: str | bytes, user: str = OTHER, content_type: str = "application/yaml") -> Any:
    raw = text.decode() if isinstance(text, bytes) else text
    return api.post("/templates/import", user=user, raw_body=raw, headers={"Content-Type": content_type})


@pytest.mark.parametrize(
    "steps",
    [
        STEPS,
        [
            {"id": "tricky", "prompt": "  leading spaces\ttab\n\nblank line above, trailing space \n"},
            {"id": "quotes", "prompt": "'single' \"double\" # not a comment: {{ a['b'] }} - [x]"},
            {"id": "unicode", "prompt": "Ünïcødé — {{ name }} 🎉\r\nwindows line"},
            {
                "id": "yaml_like",
                "prompt": "key: value\n- item\n---\n...",
                "model": "mistral.mistral-7b-instruct-v0:2",
            },
        ],
    ],
)
def test_export_then_import_round_trips_identical_steps(aws: Any, steps: list[dict[str, Any]]) -> None:
    source = create(user=OWNER, steps=steps, public=True)
    exported = api.get(f"/templates/{source}/export", user=OWNER).body
    aws.capture.drain()

    answer = import_yaml(exported)

    assert answer.status == 201, answer.body
    imported_id = answer.body["template_id"]
    imported = api.get(f"/templates/{imported_id}", user=OTHER).body
    original = api.get(f"/templates/{source}", user=OWNER).body
    assert imported["template_definition"] == original["template_definition"]
    assert imported["template_definition"]["steps"] == [
        {"model": None, "model_tier": None} | s for s in steps
    ]
    assert imported["schema_requirements"] == original["schema_requirements"]
    assert (imported["name"], imported["description"]) == (original["name"], original["description"])
    assert imported["is_public"] is False
    assert imported["is_owner"] is True
    assert template_events(aws) == [
        (
            "Template Imported",
            {"template_id": imported_id, "user_id": OTHER, "version": 1, "name": "Author bios"},
        )
    ]


@pytest.mark.parametrize(
    ("document", "line"),
    [
        ("name: x\nsteps:\n  - id: a\n    prompt: [unclosed\n", 5),
        ("name: x\n  bad indentation: here\n", 2),
        ("name: x\nname: y\nsteps: []\n", 2),  # duplicate key
        ("base: &a {id: a, prompt: x}\nname: x\nsteps: [*a]\n", 1),  # anchors are refused
        ("name: x\nsteps:\n- !!python/object/apply:os.system ['true']\n", 3),  # no Python objects
    ],
)
def test_import_of_broken_yaml_is_a_400_naming_the_line_and_writes_nothing(
    aws: Any, document: str, line: int
) -> None:
    answer = import_yaml(document)

    assert answer.status == 400, answer.body
    assert answer.body["details"] == {"line": line}
    assert f"line {line}" in answer.body["error"]
    assert aws.client("dynamodb").scan(TableName=TEMPLATES_TABLE)["Count"] == 0
    assert template_events(aws) == []


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("- just\n- a list\n", "must be a YAML mapping"),
        ("name: x\nsteps: [{id: a, prompt: x}]\nowner: me\n", "Unknown keys in the document: owner"),
        ("name: x\nsteps: [{id: a, prompt: x, extra: 1}]\n", "not a valid template"),
        ("steps: [{id: a, prompt: x}]\n", "not a valid template"),
        ("name: x\nsteps: [{id: a, prompt: '{% if %}'}]\n", "line 1"),  # validated as a create
        ("name: x\nsteps: []\n", "1 to 10 steps"),
    ],
)
def test_import_is_validated_exactly_as_a_create(aws: Any, document: str, message: str) -> None:
    answer = import_yaml(document)
    assert answer.status == 400, answer.body
    assert message in answer.body["error"]
    assert aws.client("dynamodb").scan(TableName=TEMPLATES_TABLE)["Count"] == 0


@pytest.mark.parametrize(
    ("raw", "status"),
    [("name: x\nsteps: [{id: a, prompt: 'ünï'}]\n".encode(), 201), (b"name: \xff\xfe\n", 400)],
)
def test_import_reads_a_base64_encoded_body_as_its_bytes(aws: Any, raw: bytes, status: int) -> None:
    """API Gateway may pass the body base64-encoded; bytes that are not UTF-8 are a 400."""
    event = build_event("POST", "/templates/import", user=OTHER, headers={"Content-Type": "application/yaml"})
    event["body"] = base64.b64encode(raw).decode()
    event["isBase64Encoded"] = True

    answer = lambda_handler(event, LambdaContext())

    assert answer["statusCode"] == status, answer["body"]


def test_import_refuses_an_oversized_body_and_non_yaml_content_types(aws: Any) -> None:
    big = "name: x\ndescription: '" + "x" * MAX_IMPORT_BYTES + "'\nsteps: [{id: a, prompt: x}]\n"
    assert import_yaml(big).status == 413
    assert import_yaml("name: x\nsteps: [{id: a, prompt: x}]\n", content_type="image/png").status == 415
    assert import_yaml("name: x\nsteps: [{id: a, prompt: x}]\n", user=None).status == 401  # type: ignore[arg-type]
    assert aws.client("dynamodb").scan(TableName=TEMPLATES_TABLE)["Count"] == 0


def test_import_takes_json_and_is_public_and_ignores_stated_requirements(aws: Any) -> None:
    document = json.dumps(
        {
            "name": "J",
            "is_public": True,
            "schema_requirements": ["made.up"],
            "steps": [{"id": "a", "prompt": "{{ x.y }}"}],
        }
    )
    answer = import_yaml(document, content_type="application/json")
    assert answer.status == 201, answer.body
    assert answer.body["schema_requirements"] == ["x.y"]
    stored = (
        aws.session.resource("dynamodb")
        .Table(TEMPLATES_TABLE)
        .query(KeyConditionExpression=Key("template_id").eq(answer.body["template_id"]))["Items"]
    )
    assert {int(i["version"]): i["is_public"] for i in stored} == {0: True, 1: True}


def test_a_fork_conflicting_on_its_busy_source_is_retried_and_counts_once(aws: Any) -> None:
    source = create(public=True)
    flaky = ConflictsFirst(aws.client("dynamodb"), conflicts=2, at=2)  # the source head
    service = TemplateService(
        repository=TemplateRepository(flaky, TEMPLATES_TABLE),
        publisher=EventPublisher(aws.client("events"), s.EventBusSettings().event_bus_name),
    )
    request = CreateTemplateRequest(
        name="x", template_definition=TemplateDefinition.model_validate({"steps": STEPS})
    )

    written = service.create(OTHER, request, forked_from=ForkedFrom(template_id=source, version=1))

    assert flaky.calls == 3
    assert head(aws, source)["fork_count"] == 1
    assert head(aws, written.template_id)["forked_from"] == {"template_id": source, "version": 1}
