"""A real HTTP server on 127.0.0.1 standing in for the ECS container agent's task protection endpoint.

It serves ``PUT /api/<container>/task-protection/v1/state`` the way the agent does
(aws/amazon-ecs-agent, ecs-agent/tmds/handlers/taskprotection/v1): the body must be JSON with a
``ProtectionEnabled`` boolean and nothing but ``ProtectionEnabled``/``ExpiresInMinutes`` (400
``InvalidParameterException`` otherwise), and a success answers 200 ``{"protection": {...}}``.
Tests can make it answer otherwise (``answer_with``) and read back every request it got.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CONTAINER = "test-container"
TASK_ARN = "arn:aws:ecs:us-east-1:123456789012:task/plot-palette-workers/0123456789abcdef"
ENABLE = {"ProtectionEnabled": True}
DISABLE = {"ProtectionEnabled": False}


@dataclass(frozen=True)
class AgentRequest:
    method: str
    path: str
    content_type: str | None
    body: Any
    at: float


def protection_answer(enabled: bool, minutes: int | None) -> dict[str, Any]:
    expires = time.time() + 60 * (minutes or 120) if enabled else None
    return {"protection": {"ProtectionEnabled": enabled, "ExpirationDate": expires, "TaskArn": TASK_ARN}}


class FakeEcsAgent:
    def __init__(self) -> None:
        self.requests: list[AgentRequest] = []
        self._lock = threading.Lock()
        self._answer: tuple[int, Any] | None = None
        self._delay = 0.0
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                agent._serve(self)

            def do_GET(self) -> None:
                agent._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-ecs-agent",
            daemon=True,
        )
        self._thread.start()

    @property
    def uri(self) -> str:
        """What ECS puts in ``ECS_AGENT_URI``: the agent's address plus ``/api/<container id>``."""
        return f"http://127.0.0.1:{self._server.server_port}/api/{CONTAINER}"

    def answer_with(self, status: int, body: Any, *, delay: float = 0.0) -> None:
        """Answer every following request with ``status`` and ``body`` (after ``delay`` seconds)."""
        with self._lock:
            self._answer = (status, body)
            self._delay = delay

    def states(self) -> list[dict[str, Any]]:
        """The bodies of the state changes received, in order."""
        with self._lock:
            return [r.body for r in self.requests if r.method == "PUT"]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------- serving

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        request = AgentRequest(
            method=handler.command,
            path=handler.path,
            content_type=handler.headers.get("Content-Type"),
            body=body,
            at=time.monotonic(),
        )
        with self._lock:
            self.requests.append(request)
            answer, delay = self._answer, self._delay
        if delay:
            time.sleep(delay)
        status, payload = answer if answer is not None else self._agent_answer(request)
        data = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:
            pass  # the client gave up (timeout test)

    @staticmethod
    def _agent_answer(request: AgentRequest) -> tuple[int, Any]:
        if request.path != f"/api/{CONTAINER}/task-protection/v1/state":
            return 404, {"error": {"Code": "ResourceNotFoundException", "Message": "no such path"}}
        if request.method == "GET":
            return 200, protection_answer(False, None)
        body = request.body
        invalid = (
            not isinstance(body, dict)
            or not isinstance(body.get("ProtectionEnabled"), bool)
            or set(body) - {"ProtectionEnabled", "ExpiresInMinutes"}
            or not isinstance(body.get("ExpiresInMinutes", 1), int)
        )
        if invalid:
            message = "UpdateTaskProtection: failed to decode request"
            return 400, {"error": {"Code": "InvalidParameterException", "Message": message}}
        return 200, protection_answer(body["ProtectionEnabled"], body.get("ExpiresInMinutes"))


def closed_port_uri() -> str:
    """An agent URI nothing listens on (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/api/{CONTAINER}"


def running_agent() -> Iterator[FakeEcsAgent]:
    """Body of an ``ecs_agent`` fixture: a started agent, closed afterwards."""
    agent = FakeEcsAgent()
    try:
        yield agent
    finally:
        agent.close()
