from functions.openapi import DOCUMENT, render


def test_committed_openapi_document_matches_the_code() -> None:
    assert DOCUMENT.read_text() == render(), "the API changed: run `make openapi` and commit the result"
