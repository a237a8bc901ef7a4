from pathlib import Path

from functions.openapi import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_committed_openapi_document_matches_the_code() -> None:
    assert DOC.read_text() == render(), "the API changed: run `make openapi` and commit docs/openapi.json"
