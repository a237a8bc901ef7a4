"""The OpenAPI document lists what the API can answer and the rules it enforces (issue 14, item 11)."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate

from functions.openapi import openapi_document
from functions.seed_data.handler import lambda_handler as seed_handler
from tests.integration.jobs.support import job_body, jobs_api, make_template, upload_seed
from tests.support.http import ApiClient

DOC = openapi_document()
OPERATIONS = [(m, p, op) for p, item in DOC["paths"].items() for m, op in item.items()]


def _schema(name: str) -> dict[str, Any]:
    """A component schema that resolves its $refs against the whole document."""
    return {"$ref": f"#/components/schemas/{name}", "components": DOC["components"]}


def test_the_document_is_valid_openapi() -> None:
    validate(DOC)


@pytest.mark.parametrize(
    ("method", "path", "operation"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS]
)
def test_every_operation_lists_the_platform_answers(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    responses = operation["responses"]
    throttled = responses["429"]
    assert throttled["headers"]["Retry-After"]["required"] is False
    if operation.get("security") != []:
        unauthorized = responses["401"]["content"]["application/json"]["schema"]
        # API Gateway's authorizer answers 401 with its own body.
        jsonschema.validate({"message": "Unauthorized"}, {**unauthorized, "components": DOC["components"]})
        jsonschema.validate({"error": "Unauthorized"}, {**unauthorized, "components": DOC["components"]})
    if "requestBody" in operation:
        assert {"400", "415"} <= set(responses)


def test_links_lead_from_created_resources_to_the_operations_on_them() -> None:
    job_links = DOC["paths"]["/jobs"]["post"]["responses"]["201"]["links"]
    template_links = DOC["paths"]["/templates"]["post"]["responses"]["201"]["links"]
    assert {link["operationRef"] for link in job_links.values()} == {
        "#/paths/~1jobs~1{job_id}/get",
        "#/paths/~1jobs~1{job_id}/delete",
        "#/paths/~1jobs~1{job_id}~1cancel/post",
        "#/paths/~1jobs~1{job_id}~1download/get",
        "#/paths/~1dashboard~1{job_id}/get",
    }
    assert {link["operationRef"] for link in template_links.values()} == {
        "#/paths/~1templates~1{template_id}/get",
        "#/paths/~1templates~1{template_id}/put",
        "#/paths/~1templates~1{template_id}/delete",
    }
    for links in (job_links, template_links):
        for link in links.values():
            method = link["operationRef"].rsplit("/", 1)[1]
            path = link["operationRef"].split("/")[2].replace("~1", "/")
            assert method in DOC["paths"][path]


# The schema-valid inputs the API refused: now each is either accepted or refused by the schema.


def test_a_budget_with_seven_decimals_is_accepted_to_the_micro_dollar(aws) -> None:
    body = job_body(make_template(aws, "user-1"), upload_seed(aws, "user-1"), budget_limit=1.0000001)
    jsonschema.validate(body, _schema("CreateJobRequest"))
    created = jobs_api.post("/jobs", body=body)
    assert created.status == 201, created.body
    detail = jobs_api.get(f"/jobs/{created.body['job_id']}")
    assert str(detail.body["budget_limit"]) == "1.000001"  # rounded up, never below what was asked


def test_a_filename_without_an_extension_needs_a_content_type_in_the_schema_too(aws) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"filename": "0"}, _schema("UploadRequest"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {"filename": "a.csv", "content_type": "application/json"}, _schema("UploadRequest")
        )
    accepted = {"filename": "0", "content_type": "text/csv"}
    jsonschema.validate(accepted, _schema("UploadRequest"))
    assert ApiClient(seed_handler).post("/seed-data/upload", body=accepted).status == 200


@pytest.mark.parametrize(
    "definition",
    [
        {"steps": []},
        {"steps": [{"id": f"s{i}", "prompt": "x"} for i in range(11)]},
        {"steps": [{"id": "1st", "prompt": "x"}]},
        {"steps": [{"id": "steps", "prompt": "x"}]},
        {"steps": [{"id": "a", "prompt": "   "}]},
    ],
)
def test_definitions_the_service_refuses_are_invalid_in_the_schema(definition: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {"name": "t", "template_definition": definition}, _schema("CreateTemplateRequest")
        )
