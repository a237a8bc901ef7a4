"""Reporting to the lifecycle's waiting task: ``SendTaskSuccess``/``Failure``/``Heartbeat``.

``TaskReporter`` is the small interface the worker uses; ``StepFunctionsTaskReporter`` backs it
with the boto3 ``stepfunctions`` client. A token the service no longer knows (the task timed out,
was failed by the cancellation state machine, or the execution ended) raises ``TaskGone``: there
is nobody left to report to, and the worker stops.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from botocore.exceptions import ClientError

GONE_CODES = frozenset({"TaskTimedOut", "TaskDoesNotExist", "InvalidToken"})
MAX_CAUSE_CHARS = 32_768  # SendTaskFailure's limit
MAX_ERROR_CHARS = 256


class TaskGone(Exception):
    """The task token is no longer waiting for an answer."""


class TaskReporter(Protocol):
    def heartbeat(self, task_token: str) -> None: ...

    def success(self, task_token: str, output: dict[str, Any]) -> None: ...

    def failure(self, task_token: str, error: str, cause: str) -> None: ...


class StepFunctionsTaskReporter:
    def __init__(self, sfn_client: Any) -> None:
        self._sfn = sfn_client

    def _send(self, operation: str, **arguments: Any) -> None:
        try:
            getattr(self._sfn, operation)(**arguments)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in GONE_CODES:
                raise TaskGone(code) from error
            raise

    def heartbeat(self, task_token: str) -> None:
        self._send("send_task_heartbeat", taskToken=task_token)

    def success(self, task_token: str, output: dict[str, Any]) -> None:
        self._send("send_task_success", taskToken=task_token, output=json.dumps(output))

    def failure(self, task_token: str, error: str, cause: str) -> None:
        self._send(
            "send_task_failure",
            taskToken=task_token,
            error=error[:MAX_ERROR_CHARS],
            cause=cause[:MAX_CAUSE_CHARS],
        )
