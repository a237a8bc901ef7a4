"""The caller's identity, as API Gateway's JWT authorizer passes it.

API Gateway (HTTP API, payload 2.0) verifies the token and puts its claims under
``requestContext.authorizer.jwt.claims``; the user is the ``sub`` claim. No claims means the route
was reached without the authorizer (or with a broken one): that is a 401, never a default user.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from functions.common.errors import UnauthorizedError


@dataclass(frozen=True)
class Caller:
    user_id: str
    email: str | None = None


def caller_from_event(raw_event: dict[str, Any]) -> Caller:
    claims = (((raw_event.get("requestContext") or {}).get("authorizer") or {}).get("jwt") or {}).get(
        "claims"
    ) or {}
    sub = claims.get("sub") if isinstance(claims, dict) else None
    if not isinstance(sub, str) or not sub.strip():
        raise UnauthorizedError("Unauthorized")
    email = claims.get("email")
    return Caller(user_id=sub, email=email if isinstance(email, str) else None)
