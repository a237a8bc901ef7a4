import json
from typing import Any

from functions.openapi import DOCUMENT, render


def test_committed_openapi_document_matches_the_code() -> None:
    assert DOCUMENT.read_text() == render(), "the API changed: run `make openapi` and commit the result"


def test_the_template_product_routes_are_documented_with_examples() -> None:
    """Each new route's request and success bodies carry an example a client can start from."""
    document = json.loads(render())
    schemas = document["components"]["schemas"]

    def examples_of(media: dict[str, Any]) -> Any:
        if "examples" in media:
            return media["examples"]
        schema = media["schema"]
        ref = schema.get("$ref") or next((s["$ref"] for s in schema.get("anyOf", []) if "$ref" in s), "")
        return schemas[ref.rsplit("/", 1)[-1]].get("examples") if ref else None

    routes = {
        ("/templates/{template_id}/test", "post", "200"): True,
        ("/templates/{template_id}/versions", "get", "200"): False,
        ("/templates/marketplace", "get", "200"): False,
        ("/templates/{template_id}/fork", "post", "201"): True,
        ("/templates/{template_id}/export", "get", "200"): False,
        ("/templates/import", "post", "201"): True,
    }
    for (path, method, status), has_body in routes.items():
        operation = document["paths"][path][method]
        assert operation.get("security", document["security"]) == [{"cognito": []}], path  # JWT
        if has_body:
            (body,) = operation["requestBody"]["content"].values()
            assert examples_of(body), (path, "request")
        if path != "/templates/import":  # its answer is the create's TemplateWriteResponse
            (answer,) = operation["responses"][status]["content"].values()
            assert examples_of(answer), (path, status)
