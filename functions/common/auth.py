"""The caller's identity, as API Gateway's JWT authorizer passes it.

API Gateway (HTTP API, payload 2.0) verifies the token and puts its claims under
``requestContext.authorizer.jwt.claims``; the user is the ``sub`` claim. No claims means the route
was reached without the authorizer (or with a broken one): that is a 401, never a default user.

Only Cognito ID and access tokens identify a caller (``token_use`` ``id`` or ``access``). A refresh
token is opaque in AWS, but an emulator (MiniStack) issues it as a signed JWT with
``token_use=refresh`` that the JWT authorizer accepts (its issuer, audience and signature are
right), so a token with any other ``token_use``, or none, is a 401 here. API Gateway's JWT
authorizer cannot check the claim itself: it validates only ``iss``, ``aud``/``client_id``,
``exp``, ``nbf`` and scopes, and requiring a scope would refuse ID tokens, which carry none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from functions.common.errors import UnauthorizedError

CALLER_TOKEN_USES = frozenset({"id", "access"})


@dataclass(frozen=True)
class Caller:
    user_id: str
    email: str | None = None


def caller_from_event(raw_event: dict[str, Any]) -> Caller:
    claims = (((raw_event.get("requestContext") or {}).get("authorizer") or {}).get("jwt") or {}).get(
        "claims"
    ) or {}
    if not isinstance(claims, dict):
        raise UnauthorizedError("Unauthorized")
    sub, token_use = claims.get("sub"), claims.get("token_use")
    if not isinstance(sub, str) or not sub.strip() or str(token_use) not in CALLER_TOKEN_USES:
        raise UnauthorizedError("Unauthorized")
    email = claims.get("email")
    return Caller(user_id=sub, email=email if isinstance(email, str) else None)
