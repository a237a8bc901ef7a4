"""Typed domain errors. Each maps to one HTTP status in ``functions.common.api``.

Services raise these; handlers never build error responses by hand and nothing maps errors by
searching message text.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error a client can cause. ``status_code`` is the HTTP answer."""

    status_code = 400

    def __init__(self, message: str, details: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}


class BadRequestError(DomainError):
    status_code = 400


class UnauthorizedError(DomainError):
    status_code = 401


class ForbiddenError(DomainError):
    status_code = 403


class NotFoundError(DomainError):
    status_code = 404


class ConflictError(DomainError):
    status_code = 409


class PayloadTooLargeError(DomainError):
    status_code = 413


class TooManyRequestsError(DomainError):
    """A per-user quota or rate limit is used up; the answer carries ``Retry-After`` (whole seconds)."""

    status_code = 429

    def __init__(self, message: str, retry_after_seconds: int, details: Any = None) -> None:
        retry_after_seconds = max(1, retry_after_seconds)
        super().__init__(message, details, headers={"Retry-After": str(retry_after_seconds)})
        self.retry_after_seconds = retry_after_seconds


class ServiceUnavailableError(DomainError):
    """A service the request depends on (the model) cannot answer now; nothing was changed."""

    status_code = 503
