from functions.health.handler import lambda_handler
from functions.openapi import DOCUMENT
from tests.support.http import ApiClient


def test_health_answers_without_a_token() -> None:
    answer = ApiClient(lambda_handler).get("/health", user=None)
    assert answer.status == 200
    assert answer.body == {"status": "ok"}


def test_unknown_route_is_a_json_404() -> None:
    answer = ApiClient(lambda_handler).get("/nope")
    assert answer.status == 404
    assert answer.body == {"error": "Not found"}


def test_an_anonymous_request_with_bad_input_is_401_not_400() -> None:
    from functions.jobs.handler import lambda_handler as jobs_handler

    answer = ApiClient(jobs_handler).post("/jobs", user=None, body={"budget_limit": "lots"})
    assert answer.status == 401
    assert answer.body == {"error": "Unauthorized"}


def test_swagger_ui_serves_the_whole_api_offline_without_a_token() -> None:
    import json

    client = ApiClient(lambda_handler)
    page = client.get("/docs", user=None)
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "SwaggerUIBundle" in page.body  # the bundled assets are inlined: no CDN needed
    assert "/jobs/{job_id}" in page.body

    document = client.get("/openapi.json", user=None)
    assert document.status == 200
    assert set(document.body["paths"]) >= {"/health", "/jobs", "/templates", "/seed-data/upload"}
    assert document.body["paths"]["/health"]["get"]["security"] == []
    assert document.body["security"] == [{"cognito": []}]
    # The committed document itself (tests/integration/test_openapi.py keeps it equal to the code).
    assert json.dumps(document.body, sort_keys=True, indent=2) + "\n" == DOCUMENT.read_text()


def test_the_health_function_imports_no_other_domain() -> None:
    import subprocess
    import sys

    probe = (
        "import sys, functions.health.handler as h; h._openapi_json(); "
        "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('functions.')}))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "['common', 'health']"
