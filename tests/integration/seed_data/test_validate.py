"""POST /seed-data/validate against moto: every format, missing nested fields, malformed lines,
empty files, and other users' keys and templates."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.common import settings as s
from functions.seed_data.handler import lambda_handler
from functions.templates.handler import lambda_handler as templates_handler
from tests.support.http import ApiClient

pytestmark = pytest.mark.integration

api = ApiClient(lambda_handler)
templates_api = ApiClient(templates_handler)
BUCKET = s.BucketSettings().bucket_name
USER, OTHER = "user-1", "user-2"

PROMPT = "Write about {{ author.name }} born in {{ author.address.city }}; topic {{ topic }}"


def make_template(user: str = USER, prompt: str = PROMPT, public: bool = False) -> str:
    answer = templates_api.post(
        "/templates",
        user=user,
        body={
            "name": "t",
            "is_public": public,
            "template_definition": {"steps": [{"id": "a", "prompt": prompt}]},
        },
    )
    assert answer.status == 201, answer.body
    return str(answer.body["template_id"])


def put_seed(
    aws: Any, name: str, content: str | bytes, user: str = USER, content_type: str | None = None
) -> str:
    key = f"seed-data/{user}/{name}"
    extra = {"ContentType": content_type} if content_type else {}
    raw = content.encode() if isinstance(content, str) else content
    aws.client("s3").put_object(Bucket=BUCKET, Key=key, Body=raw, **extra)
    return key


def validate(key: str, template_id: str, user: str = USER, **extra: Any) -> Any:
    return api.post(
        "/seed-data/validate", user=user, body={"s3_key": key, "template_id": template_id, **extra}
    )


def rec(name: str = "Ada", city: str | None = "London", topic: str = "math") -> dict[str, Any]:
    author: dict[str, Any] = {"name": name}
    if city is not None:
        author["address"] = {"city": city}
    return {"author": author, "topic": topic}


GOOD = [rec(), rec("Bob", "Paris"), rec("Cy", "Rome")]


@pytest.mark.parametrize(
    ("name", "content", "fmt", "count"),
    [
        ("one.json", json.dumps(GOOD[0]), "json", 1),
        ("many.json", json.dumps(GOOD, indent=2), "json", 3),
        ("many.jsonl", "\n".join(json.dumps(r) for r in GOOD) + "\n", "jsonl", 3),
        (
            "many.csv",
            "author.name,author.address.city,topic\nAda,London,math\nBob,Paris,art\n",
            "csv",
            2,
        ),
    ],
)
def test_a_file_whose_records_have_every_field_is_valid(
    aws: Any, name: str, content: str, fmt: str, count: int
) -> None:
    template_id = make_template()
    answer = validate(put_seed(aws, name, content), template_id)
    assert answer.status == 200, answer.body
    assert answer.body == {"valid": True, "format": fmt, "records_checked": count}


def test_the_format_falls_back_to_the_objects_content_type(aws: Any) -> None:
    key = put_seed(aws, "upload", "\n".join(json.dumps(r) for r in GOOD), content_type="application/x-ndjson")
    answer = validate(key, make_template())
    assert answer.status == 200
    assert answer.body["format"] == "jsonl"


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_missing_nested_fields_are_a_400_listing_fields_records_and_lines(aws: Any, fmt: str) -> None:
    records = [
        rec(),
        rec("Bob", city=None),
        rec("Cy"),
        {"author": {"name": "Di", "address": "flat"}, "topic": "t"},
    ]
    if fmt == "json":
        content = "[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]"
        lines = [3, 5]
    elif fmt == "jsonl":
        content = "\n".join(json.dumps(r) for r in records)
        lines = [2, 4]
    else:
        content = "author.name,topic\nAda,x\nBob,y\n"
        lines = [2, 3]
    answer = validate(put_seed(aws, f"seed.{fmt}", content), make_template())
    assert answer.status == 400
    body = answer.body
    assert body["valid"] is False
    assert body["missing_fields"] == ["author.address.city"]
    assert [e["line"] for e in body["errors"]] == lines
    assert all("author.address.city" in e["message"] for e in body["errors"])
    if fmt == "csv":
        assert [e["record"] for e in body["errors"]] == [1, 2]
        assert body["records_checked"] == 2
    else:
        assert [e["record"] for e in body["errors"]] == [2, 4]
        assert body["records_checked"] == 4
    assert "error" in body


def test_only_the_first_20_errors_are_reported_but_every_record_is_checked(aws: Any) -> None:
    records = [{"author": {"name": f"n{i}"}} if i % 2 else rec() for i in range(60)]
    key = put_seed(aws, "many.jsonl", "\n".join(json.dumps(r) for r in records))
    answer = validate(key, make_template())
    assert answer.status == 400
    assert len(answer.body["errors"]) == 20
    assert answer.body["errors"][0] == {
        "record": 2,
        "line": 2,
        "message": "Missing required field(s): author.address.city, topic",
    }
    assert answer.body["records_checked"] == 60
    assert answer.body["missing_fields"] == ["author.address.city", "topic"]
    assert "30 of 60" in answer.body["error"]


@pytest.mark.parametrize(
    ("name", "content", "line"),
    [
        ("bad.json", '[\n{"author": {"name": "A"}, "topic": "x"},\n{"author": ,}\n]', 3),
        ("bad.jsonl", json.dumps(rec()) + "\n" + json.dumps(rec()) + "\n{broken\n", 3),
        ("bad.csv", 'author.name,topic\nAda,x\nBob,"unterminated\n', 3),
        ("bad2.csv", "author.name,topic\nAda,x\nBob\n", 3),
    ],
)
def test_malformed_data_is_a_400_naming_the_line(aws: Any, name: str, content: str, line: int) -> None:
    answer = validate(put_seed(aws, name, content), make_template(prompt="{{ author.name }}"))
    assert answer.status == 400
    assert answer.body["valid"] is False
    assert f"line {line}" in answer.body["error"]
    assert answer.body["errors"][-1]["line"] == line
    assert "Ada" not in json.dumps(answer.body)  # no seed content echoed back


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.jsonl", "", "empty"),
        ("empty.json", "[]", "no records"),
        ("header.csv", "author.name\n", "no records"),
        ("blank.jsonl", "\n\n", "no records"),
    ],
)
def test_an_empty_file_is_a_400(aws: Any, name: str, content: str, message: str) -> None:
    answer = validate(put_seed(aws, name, content), make_template())
    assert answer.status == 400
    assert message in answer.body["error"]
    assert answer.body["records_checked"] == 0


def test_an_unknown_format_is_a_400(aws: Any) -> None:
    answer = validate(put_seed(aws, "notes.txt", "hello"), make_template())
    assert answer.status == 400
    assert "Unsupported" in answer.body["error"]


def test_a_specific_template_version_is_checked(aws: Any) -> None:
    template_id = make_template(prompt="{{ topic }}")
    assert (
        templates_api.put(
            f"/templates/{template_id}",
            user=USER,
            body={"template_definition": {"steps": [{"id": "a", "prompt": "{{ missing.field }}"}]}},
        ).status
        == 200
    )
    key = put_seed(aws, "s.jsonl", json.dumps(rec()))
    assert validate(key, template_id, template_version=1).status == 200
    assert validate(key, template_id).body["missing_fields"] == ["missing.field"]
    assert validate(key, template_id, template_version=3).status == 404


@pytest.mark.parametrize(
    "key",
    [
        f"seed-data/{OTHER}/s.jsonl",
        "seed-data/user-10/s.jsonl",  # a prefix of another user's name is not the caller's
        f"seed-data/{USER}",
        f"seed-data/{USER}/../{OTHER}/s.jsonl",
        f"s3://other-bucket/seed-data/{USER}/s.jsonl",
        "jobs/some-job/outputs/part-00000.jsonl",
    ],
)
def test_a_key_outside_the_callers_prefix_is_a_403_without_data(aws: Any, key: str) -> None:
    put_seed(aws, "s.jsonl", json.dumps(rec()), user=OTHER)
    answer = validate(key, make_template())
    assert answer.status == 403
    assert answer.body == {"error": "Forbidden"}


def test_another_users_private_template_is_a_403_and_a_missing_one_a_404(aws: Any) -> None:
    key = put_seed(aws, "s.jsonl", json.dumps(rec()))
    theirs = make_template(user=OTHER)
    answer = validate(key, theirs)
    assert answer.status == 403
    assert answer.body == {"error": "Forbidden"}
    assert validate(key, "no-such-template").status == 404


def test_another_users_public_template_can_be_used(aws: Any) -> None:
    key = put_seed(aws, "s.jsonl", json.dumps(rec()))
    assert validate(key, make_template(user=OTHER, public=True)).status == 200


def test_a_missing_seed_object_is_a_404(aws: Any) -> None:
    answer = validate(f"seed-data/{USER}/nothing.jsonl", make_template())
    assert answer.status == 404
    assert answer.body == {"error": "Seed data not found"}


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"s3_key": "x"},
        {"s3_key": "x", "template_id": "t", "template_version": 0},
        {"s3_key": 1, "template_id": "t"},
    ],
)
def test_a_malformed_validate_request_is_a_400(aws: Any, payload: dict[str, Any]) -> None:
    assert api.post("/seed-data/validate", user=USER, body=payload).status == 400


def test_validate_needs_a_caller(aws: Any) -> None:
    answer = validate(f"seed-data/{USER}/s.jsonl", "t", user=None)
    assert answer.status == 401


def test_validation_streams_an_object_larger_than_one_read_chunk(aws: Any) -> None:
    records = [rec(f"author-{i}", "x" * 200) for i in range(3000)]  # ~900 KB, several 256 KB reads
    records[2500] = {"author": {"name": "late"}, "topic": "t"}
    key = put_seed(aws, "big.json", json.dumps(records))
    answer = validate(key, make_template())
    assert answer.status == 400
    assert answer.body["records_checked"] == 3000
    assert [e["record"] for e in answer.body["errors"]] == [2501]


# ------------------------------------------------------------------ folders


def test_a_folder_is_every_file_in_key_order_as_one_stream(aws: Any) -> None:
    template_id = make_template()
    put_seed(aws, "batch/a.jsonl", json.dumps(rec()) + "\n" + json.dumps(rec("Bo")) + "\n")
    put_seed(aws, "batch/b.json", json.dumps([rec("Cy"), rec("Di", city=None)]))
    put_seed(aws, "other.jsonl", json.dumps(rec(city=None)))  # not in the folder

    answer = validate(f"seed-data/{USER}/batch/", template_id)

    assert answer.status == 400
    assert answer.body["valid"] is False
    assert answer.body["records_checked"] == 4  # both files, as one stream
    assert answer.body["missing_fields"] == ["author.address.city"]
    assert [e["record"] for e in answer.body["errors"]] == [4]


def test_a_folder_of_good_files_is_valid_and_an_s3_uri_names_the_same(aws: Any) -> None:
    template_id = make_template()
    put_seed(aws, "batch/a.jsonl", json.dumps(rec()) + "\n")
    put_seed(aws, "batch/b.csv", "author.name,author.address.city,topic\nBo,Paris,art\n")
    for path in (f"seed-data/{USER}/batch/", f"s3://{BUCKET}/seed-data/{USER}/batch/"):
        answer = validate(path, template_id)
        assert answer.status == 200, answer.body
        assert answer.body == {"valid": True, "format": "mixed", "records_checked": 2}


def test_a_malformed_file_in_a_folder_is_named(aws: Any) -> None:
    template_id = make_template()
    put_seed(aws, "batch/a.jsonl", json.dumps(rec()) + "\n")
    put_seed(aws, "batch/b.jsonl", "{not json\n")
    answer = validate(f"seed-data/{USER}/batch/", template_id)
    assert answer.body["valid"] is False
    assert f"seed-data/{USER}/batch/b.jsonl" in answer.body["error"]


def test_an_empty_or_missing_folder_is_404_and_another_users_folder_403(aws: Any) -> None:
    template_id = make_template()
    put_seed(aws, "batch/a.jsonl", json.dumps(rec()), user=OTHER)
    assert validate(f"seed-data/{USER}/batch/", template_id).status == 404
    assert validate(f"seed-data/{OTHER}/batch/", template_id).status == 403
