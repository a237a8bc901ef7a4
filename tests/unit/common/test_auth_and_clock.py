from datetime import UTC, datetime

import pytest

from functions.common.auth import caller_from_event
from functions.common.clock import parse_iso, to_iso
from functions.common.errors import UnauthorizedError


def test_caller_is_the_jwt_sub_claim() -> None:
    claims = {"sub": "abc", "email": "a@b.c", "token_use": "id"}
    event = {"requestContext": {"authorizer": {"jwt": {"claims": claims}}}}
    caller = caller_from_event(event)
    assert (caller.user_id, caller.email) == ("abc", "a@b.c")


def test_an_access_token_identifies_the_caller_too() -> None:
    claims = {"sub": "abc", "token_use": "access", "client_id": "web"}
    assert caller_from_event({"requestContext": {"authorizer": {"jwt": {"claims": claims}}}}).user_id == "abc"


@pytest.mark.parametrize("token_use", ["refresh", None, "", "ID", ["id"]])
def test_a_token_that_is_not_an_id_or_access_token_is_unauthorized(token_use: object) -> None:
    claims: dict[str, object] = {"sub": "abc"}
    if token_use is not None:
        claims["token_use"] = token_use
    with pytest.raises(UnauthorizedError):
        caller_from_event({"requestContext": {"authorizer": {"jwt": {"claims": claims}}}})


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"requestContext": {}},
        {"requestContext": {"authorizer": {"jwt": {"claims": {}}}}},
        {"requestContext": {"authorizer": {"jwt": {"claims": {"sub": "  "}}}}},
        {"requestContext": {"authorizer": {"jwt": {"claims": "sub=abc"}}}},
    ],
)
def test_no_sub_claim_is_unauthorized(event: dict) -> None:
    with pytest.raises(UnauthorizedError):
        caller_from_event(event)


def test_times_have_milliseconds_and_sort_as_strings() -> None:
    early = datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
    late = datetime(2026, 1, 2, 3, 4, 5, 7000, tzinfo=UTC)
    assert to_iso(early) == "2026-01-02T03:04:05.006Z"
    assert to_iso(early) < to_iso(late)
    assert parse_iso(to_iso(late)) == late
