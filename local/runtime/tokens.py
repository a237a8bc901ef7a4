"""Real ID tokens from the local Cognito user pool (what the JWT authorizer checks)."""

from __future__ import annotations

from typing import Any

from local.runtime.state import RuntimeInfo

DEMO_USER = "demo"
DEMO_PASSWORD = "Local-Passw0rd!"  # noqa: S105 - local emulator only, printed to the developer


def cognito_username(cognito: Any, user_pool_id: str, user: str) -> str:
    """The pool's username for ``user``: a pool signing in by email gets ``user@example.com``."""
    pool = cognito.describe_user_pool(UserPoolId=user_pool_id)["UserPool"]
    by_email = "email" in (pool.get("UsernameAttributes") or []) or "email" in (
        pool.get("AliasAttributes") or []
    )
    if by_email and "@" not in user:
        return f"{user}@example.com"
    return user


def issue_token(info: RuntimeInfo, user: str) -> str:
    """A real ID token from the local Cognito user pool for ``user``, created if needed."""
    cognito = info.client("cognito-idp")
    username = cognito_username(cognito, info.user_pool_id, user)
    email = username if "@" in username else f"{username}@example.com"
    try:
        cognito.admin_get_user(UserPoolId=info.user_pool_id, Username=username)
    except cognito.exceptions.UserNotFoundException:
        cognito.admin_create_user(
            UserPoolId=info.user_pool_id,
            Username=username,
            MessageAction="SUPPRESS",
            UserAttributes=[
                {"Name": "email", "Value": email},
                {"Name": "email_verified", "Value": "true"},
            ],
        )
    cognito.admin_set_user_password(
        UserPoolId=info.user_pool_id, Username=username, Password=DEMO_PASSWORD, Permanent=True
    )
    answer = cognito.initiate_auth(
        ClientId=info.user_pool_client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": username, "PASSWORD": DEMO_PASSWORD},
    )
    return str(answer["AuthenticationResult"]["IdToken"])
