"""ECS task scale-in protection while the worker holds a work item.

The worker service scales on the work queue's depth. When a job ends the depth drops, and ECS may
stop *any* task of the service to scale in, including one in the middle of another job. ECS's
answer is task scale-in protection: a task that holds work marks itself protected, and scale-in
(and deployments) pass over it. The runner protects its task from receiving a work item until
the result is reported, renews the protection alongside heartbeats while the job runs, and
removes it when idle again.

The ECS container agent serves ``PUT ${ECS_AGENT_URI}/task-protection/v1/state`` inside the task
with ``{"ProtectionEnabled": true, "ExpiresInMinutes": N}`` (1 to 2880 minutes; ECS clears the
protection after that) or ``{"ProtectionEnabled": false}``. The agent calls ECS
``UpdateTaskProtection`` with the task role's credentials, so the role needs
``ecs:UpdateTaskProtection`` (and ``ecs:GetTaskProtection``) on the cluster's tasks
(stacks/worker.py). It answers:

- 200 ``{"protection": {"ProtectionEnabled", "ExpirationDate", "TaskArn"}}`` on success;
- 200 ``{"failure": {"Arn", "Reason", "Detail"}}`` when ECS refused this task (``TASK_NOT_VALID``
  for a task outside a service);
- 4xx/5xx ``{"requestID"?, "error": {"Arn", "Code", "Message"}}`` (e.g. ``AccessDeniedException``).

Protection only ever helps: a call that fails (any answer but a protection, an unreachable agent)
is logged as a warning and the job carries on. ``ECS_AGENT_URI`` is set by ECS only; without it
(the local runtime, tests) ``NoTaskProtection`` does nothing.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, Protocol

from functions.common.observability import logger

STATE_PATH = "/task-protection/v1/state"
MIN_MINUTES, MAX_MINUTES = 1, 2880  # the agent's (and UpdateTaskProtection's) range
DEFAULT_TIMEOUT_SECONDS = 5.0


class TaskProtection(Protocol):
    """Keeps the worker's task out of scale-in while it holds a work item. Never raises."""

    def acquire(self) -> None:
        """A work item was received: protect the task now."""

    def renew(self) -> None:
        """The job is still running: extend the protection if it is due (called with heartbeats)."""

    def release(self) -> None:
        """The work item is done with: the task may be scaled in again."""


class NoTaskProtection:
    """Outside ECS (no ``ECS_AGENT_URI``): nothing to protect."""

    def acquire(self) -> None:
        return None

    def renew(self) -> None:
        return None

    def release(self) -> None:
        return None


class EcsAgentTaskProtection:
    """Task scale-in protection through the ECS agent's endpoint, with ``urllib``.

    ``acquire`` protects for ``expires_in_minutes``; ``renew`` protects again once
    ``renew_after_seconds`` (by default half the period) have passed since the last successful
    call, or at once if the last attempt failed, so a running job stays protected as long as its
    heartbeats come. ``release`` removes the protection.
    """

    def __init__(
        self,
        agent_uri: str,
        *,
        expires_in_minutes: int,
        renew_after_seconds: float | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not MIN_MINUTES <= expires_in_minutes <= MAX_MINUTES:
            raise ValueError(f"expires_in_minutes must be {MIN_MINUTES}..{MAX_MINUTES}")
        if urllib.parse.urlsplit(agent_uri).scheme not in ("http", "https"):
            raise ValueError(f"the ECS agent URI must be http(s): {agent_uri!r}")
        self._url = agent_uri.rstrip("/") + STATE_PATH
        self._minutes = expires_in_minutes
        self._renew_after = (
            renew_after_seconds if renew_after_seconds is not None else expires_in_minutes * 60 / 2
        )
        self._timeout = timeout_seconds
        self._monotonic = monotonic
        # The agent is link-local to the task: never route it through an HTTP(S)_PROXY.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._lock = threading.Lock()
        self._held = False
        self._protected_at: float | None = None  # the last successful protect, while held

    def acquire(self) -> None:
        with self._lock:
            self._held = True
            self._protect()

    def renew(self) -> None:
        with self._lock:
            if not self._held:
                return
            if self._protected_at is not None and self._monotonic() - self._protected_at < self._renew_after:
                return
            self._protect()

    def release(self) -> None:
        with self._lock:
            self._held = False
            self._protected_at = None
            self._put({"ProtectionEnabled": False})

    # ------------------------------------------------------------- helpers

    def _protect(self) -> None:
        began = self._monotonic()
        if self._put({"ProtectionEnabled": True, "ExpiresInMinutes": self._minutes}):
            self._protected_at = began
        else:
            self._protected_at = None  # try again at the next renewal

    def _put(self, body: dict[str, Any]) -> bool:
        """Send one state change; answer whether the agent confirmed it. Never raises."""
        # The URL's scheme is http(s), checked in the constructor (S310).
        request = urllib.request.Request(  # noqa: S310
            self._url,
            data=json.dumps(body).encode(),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, _read(error)
        except Exception as error:  # unreachable agent, timeout, reset: never fail the job
            logger.warning(
                "Task scale-in protection call failed",
                protection_enabled=body["ProtectionEnabled"],
                error=f"{type(error).__name__}: {error}"[:500],
            )
            return False
        answer = _json(raw)
        if 200 <= status < 300 and isinstance(answer.get("protection"), dict):
            return True
        failure = answer.get("failure") if isinstance(answer.get("failure"), dict) else None
        error_body = answer.get("error") if isinstance(answer.get("error"), dict) else None
        logger.warning(
            "Task scale-in protection was not applied",
            protection_enabled=body["ProtectionEnabled"],
            status=status,
            reason=(failure or {}).get("Reason") or (error_body or {}).get("Code"),
            detail=str(
                (failure or {}).get("Detail")
                or (error_body or {}).get("Message")
                or raw[:300].decode(errors="replace")
            ),
        )
        return False


def _read(error: urllib.error.HTTPError) -> bytes:
    try:
        return error.read()
    except Exception:
        return b""


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
