from functions.health.handler import lambda_handler
from tests.support.http import ApiClient


def test_health_answers_without_a_token() -> None:
    answer = ApiClient(lambda_handler).get("/health", user=None)
    assert answer.status == 200
    assert answer.body == {"status": "ok"}


def test_unknown_route_is_a_json_404() -> None:
    answer = ApiClient(lambda_handler).get("/nope")
    assert answer.status == 404
    assert answer.body == {"error": "Not found"}


def test_an_anonymous_request_with_bad_input_is_401_not_422() -> None:
    from functions.jobs.handler import lambda_handler as jobs_handler

    answer = ApiClient(jobs_handler).post("/jobs", user=None, body={"budget_limit": "lots"})
    assert answer.status == 401
    assert answer.body == {"error": "Unauthorized"}
