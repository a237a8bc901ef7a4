"""Step Functions behaviours our state machines rely on and MiniStack lacks.

Written against MiniStack **1.5.33** (pinned in pyproject.toml; ``install`` stays out on any other
version). Each patch wraps one private function
of ``ministack.services.stepfunctions`` and falls through to the original for everything else, so a
MiniStack upgrade that implements the behaviour itself should make the patch redundant (re-check
then, and delete what is no longer needed):

- ``arn:aws:states:::aws-sdk:s3:deleteObjects`` fails with ``States.Runtime`` ("not yet implemented":
  the aws-sdk S3 dispatcher covers a dozen operations). The shim sends the request to MiniStack's own
  S3 ``DeleteObjects`` handler with the wire XML and returns ``{Deleted, Errors}`` as Step Functions
  does (empty lists omitted; at most 1000 objects per request, like AWS).
- ``HeartbeatSeconds`` is ignored and ``HeartbeatSecondsPath`` / ``TimeoutSecondsPath`` are not read:
  a ``.waitForTaskToken`` task would wait for its callback forever (99999 s). The shim resolves both
  paths against the state's input and, for a callback task with a heartbeat, fails the task with
  ``States.HeartbeatTimeout`` when no ``SendTaskHeartbeat`` (or answer) arrives within the interval.
  ``TimeoutSeconds`` itself is honoured by MiniStack (``States.Timeout``).
- ``SFN_MOCK_CONFIG`` numbered attempts count state *entries*, not task attempts: a mocked ``Throw``
  for attempt ``"0"`` is raised again by every retry of that entry, so ``"0-1": Throw, "2": Return``
  can never reach its ``Return``. The shim consults the mock config once per task attempt (each
  retry is the next number, and an attempt the test case does not list makes the real call), as
  AWS Step Functions Local does.
- The optimized ``arn:aws:states:::states:startExecution`` integration runs, but a refused
  StartExecution fails the task with the bare API code (``ExecutionAlreadyExists``) where AWS names
  it ``StepFunctions.ExecutionAlreadyExistsException``; the shim renames the errors of that
  (non-``.sync``) integration the AWS way, so a Catch written for AWS matches. (MiniStack also
  refuses a taken name whose execution is still running with the same input, which AWS accepts as
  an idempotent start.)

Installed by ``python -m local.shims`` with the other shims; ``local.emulator.start_emulator``
launches MiniStack that way by default.
"""

from __future__ import annotations

import contextvars
import threading
import time
import xml.etree.ElementTree as ET
from typing import Any

from local.shims import require_version

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
DELETE_OBJECTS_MAX_KEYS = 1000
HEARTBEAT_POLL_SECONDS = 0.1

_applied = False
# (execution, state machine name, test case, state name) of the task attempt running in this thread.
_mock_scope: contextvars.ContextVar[tuple[Any, str, str, str] | None] = contextvars.ContextVar(
    "plot_palette_mock_scope", default=None
)


def _sfn() -> Any:
    from ministack.services import stepfunctions

    return stepfunctions


# --------------------------------------------------------------------------- aws-sdk:s3:deleteObjects


def delete_objects_request_body(objects: list[dict[str, Any]], quiet: bool) -> bytes:
    """The S3 ``DeleteObjects`` wire body for ``Delete.Objects`` / ``Delete.Quiet``."""
    root = ET.Element("Delete", {"xmlns": S3_NS})
    for identifier in objects:
        obj = ET.SubElement(root, "Object")
        for field in ("Key", "VersionId", "ETag"):
            if identifier.get(field) is not None:
                ET.SubElement(obj, field).text = str(identifier[field])
    ET.SubElement(root, "Quiet").text = "true" if quiet else "false"
    return ET.tostring(root, encoding="utf-8")


def parse_delete_result(body: bytes | str) -> dict[str, Any]:
    """``{Deleted: [...], Errors: [...]}`` from a ``DeleteResult`` document; empty lists omitted."""
    root = ET.fromstring(body)  # noqa: S314 - MiniStack's own answer, in process
    deleted: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for element in root:
        tag = element.tag.rsplit("}", 1)[-1]
        fields: dict[str, Any] = {child.tag.rsplit("}", 1)[-1]: child.text or "" for child in element}
        if "DeleteMarker" in fields:
            fields["DeleteMarker"] = fields["DeleteMarker"].lower() == "true"
        if tag == "Deleted":
            deleted.append(fields)
        elif tag == "Error":
            errors.append(fields)
    result: dict[str, Any] = {}
    if deleted:
        result["Deleted"] = deleted
    if errors:
        result["Errors"] = errors
    return result


def _s3_delete_objects(input_data: dict[str, Any]) -> dict[str, Any]:
    sfn = _sfn()
    from ministack import app

    bucket = input_data.get("Bucket")
    delete = input_data.get("Delete") or {}
    objects = delete.get("Objects")
    if not bucket or not isinstance(objects, list) or not objects:
        raise sfn._ExecutionError(
            "S3.S3Exception", "The XML you provided was not well-formed (Bucket and Delete.Objects required)"
        )
    if len(objects) > DELETE_OBJECTS_MAX_KEYS:
        raise sfn._ExecutionError(
            "S3.S3Exception",
            f"DeleteObjects takes at most {DELETE_OBJECTS_MAX_KEYS} keys, got {len(objects)}",
        )
    body = delete_objects_request_body(objects, bool(delete.get("Quiet", False)))
    headers = {
        "host": f"s3.{sfn.REGION}.amazonaws.com",
        "authorization": f"AWS4-HMAC-SHA256 Credential=test/20260101/{sfn.REGION}/s3/aws4_request",
        "content-type": "application/xml",
        "content-length": str(len(body)),
    }
    status, _headers, answer = app.call_service_handler_sync(
        app.SERVICE_HANDLERS["s3"], "POST", f"/{bucket}", headers, body, {"delete": ""}
    )
    text = answer.decode("utf-8") if isinstance(answer, bytes) else (answer or "")
    if status >= 400:
        code, message = "S3Exception", text or f"S3 returned status {status}"
        try:
            error = ET.fromstring(text)  # noqa: S314 - MiniStack's own answer
            code = (error.findtext("Code") or "S3") + "Exception"
            message = error.findtext("Message") or message
        except ET.ParseError:
            pass
        raise sfn._ExecutionError(sfn._prefix_sdk_error("s3", code), message)
    return parse_delete_result(text) if text.strip() else {}


# --------------------------------------------------------------------------- heartbeats and *Path timeouts


def resolve_timeout_paths(state_def: dict[str, Any], raw_input: Any, ctx: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``state_def`` with ``HeartbeatSecondsPath``/``TimeoutSecondsPath`` resolved to numbers."""
    sfn = _sfn()
    if "HeartbeatSecondsPath" not in state_def and "TimeoutSecondsPath" not in state_def:
        return state_def
    resolved = dict(state_def)
    effective = sfn._apply_input_path(state_def, raw_input, ctx)
    for path_field, field in (
        ("HeartbeatSecondsPath", "HeartbeatSeconds"),
        ("TimeoutSecondsPath", "TimeoutSeconds"),
    ):
        if path_field not in resolved:
            continue
        path = resolved.pop(path_field)
        try:
            value = sfn._resolve_path_or_ctx(path, effective, ctx)
        except Exception as exc:  # MiniStack raises its own path errors
            raise sfn._ExecutionError("States.Runtime", f"{path_field} {path}: {exc}") from exc
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise sfn._ExecutionError(
                "States.Runtime", f"{path_field} {path} must be a positive integer, got {value!r}"
            )
        resolved[field] = value
    return resolved


def _watch_heartbeat(token: str, heartbeat_seconds: float, done: threading.Event) -> None:
    """Fail the callback task with States.HeartbeatTimeout when no heartbeat arrives in time."""
    sfn = _sfn()
    last_beat: Any = None
    last_change = time.monotonic()
    while not done.wait(HEARTBEAT_POLL_SECONDS):
        info = sfn._task_tokens.get(token)
        if info is None or info["event"].is_set():
            continue
        if info.get("heartbeat") != last_beat:
            last_beat = info.get("heartbeat")
            last_change = time.monotonic()
        elif time.monotonic() - last_change >= heartbeat_seconds:
            info["error"] = {
                "Error": "States.HeartbeatTimeout",
                "Cause": f"No heartbeat within {heartbeat_seconds:g} seconds",
            }
            info["event"].set()
            return


# --------------------------------------------------------------------------- mock config per attempt


def mocked_state(execution: Any, ctx: dict[str, Any]) -> tuple[Any, str, str, str] | None:
    """The mock scope of a task when the execution's test case maps this state, else None."""
    sfn = _sfn()
    test_case = (execution or {}).get("testCase") or ""
    if not test_case or not sfn._sfn_mock_config:
        return None
    machine = (ctx.get("StateMachine") or {}).get("Name", "")
    state = (ctx.get("State") or {}).get("Name", "")
    cases = sfn._sfn_mock_config.get("StateMachines", {}).get(machine, {}).get("TestCases", {})
    if state not in cases.get(test_case, {}):
        return None
    return execution, machine, test_case, state


def next_mocked_response(lookup: Any) -> dict[str, Any] | None:
    """Consume one numbered attempt of the current task; its mocked response, or None for a real call."""
    scope = _mock_scope.get()
    if scope is None:
        return None
    execution, machine, test_case, state = scope
    attempts = execution.setdefault("mockAttempts", {})
    attempt = attempts.get(state, 0)
    attempts[state] = attempt + 1
    return lookup(machine, test_case, state, attempt)


# --------------------------------------------------------------------------- states:startExecution errors


def optimized_start_execution_error(code: str) -> str:
    """The AWS error name of a refused ``states:startExecution`` task for a StartExecution error code."""
    if "." in code:  # States.*, or already prefixed
        return code
    return f"StepFunctions.{code if code.endswith('Exception') else code + 'Exception'}"


def _mocked_result(mock: dict[str, Any]) -> Any:
    if "Throw" in mock:
        sfn = _sfn()
        raise sfn._ExecutionError(
            mock["Throw"].get("Error", "MockError"), mock["Throw"].get("Cause", "Mocked failure")
        )
    return mock.get("Return", {})


def _wrap_rest_xml(original: Any) -> Any:
    def dispatch_aws_sdk_rest_xml(
        service_info: dict[str, Any], service_name: str, action: str, input_data: Any
    ):
        if service_info.get("service_key", service_name) == "s3" and action.lower() == "deleteobjects":
            return _s3_delete_objects(input_data or {})
        return original(service_info, service_name, action, input_data)

    return dispatch_aws_sdk_rest_xml


def _wrap_execute_task(original: Any) -> Any:
    def execute_task(state_def: dict[str, Any], raw_input: Any, execution: Any, ctx: dict[str, Any]):
        scope = _mock_scope.set(mocked_state(execution, ctx))
        try:
            return original(resolve_timeout_paths(state_def, raw_input, ctx), raw_input, execution, ctx)
        finally:
            _mock_scope.reset(scope)

    return execute_task


def _wrap_invoke_resource(original: Any, get_mock_response: Any) -> Any:
    def invoke_resource(resource: str, input_data: Any):
        mock = next_mocked_response(get_mock_response)
        if mock is not None:
            return _mocked_result(mock)
        return original(resource, input_data)

    return invoke_resource


def _wrap_invoke_with_callback(original: Any, get_mock_response: Any) -> Any:
    def invoke_with_callback(resource: str, input_data: Any, token: str, state_def: dict[str, Any]):
        mock = next_mocked_response(get_mock_response)
        if mock is not None:
            return _mocked_result(mock)
        heartbeat = state_def.get("HeartbeatSeconds")
        if not heartbeat:
            return original(resource, input_data, token, state_def)
        done = threading.Event()
        watcher = threading.Thread(
            target=contextvars.copy_context().run,  # _task_tokens is scoped by account/region context
            args=(_watch_heartbeat, token, float(heartbeat), done),
            name=f"heartbeat-{token[:8]}",
            daemon=True,
        )
        watcher.start()
        try:
            return original(resource, input_data, token, state_def)
        finally:
            done.set()

    return invoke_with_callback


def _wrap_nested_start(original: Any, sfn: Any) -> Any:
    def invoke_nested_start_execution(resource: str, input_data: Any):
        try:
            return original(resource, input_data)
        except sfn._ExecutionError as error:
            raise sfn._ExecutionError(optimized_start_execution_error(error.error), error.cause) from error

    return invoke_nested_start_execution


def install() -> None:
    """Install the patches into the imported MiniStack (idempotent)."""
    global _applied
    if _applied:
        return
    require_version(__name__)
    sfn = _sfn()
    get_mock_response = sfn._get_mock_response
    sfn._dispatch_aws_sdk_rest_xml = _wrap_rest_xml(sfn._dispatch_aws_sdk_rest_xml)
    sfn._invoke_nested_start_execution = _wrap_nested_start(sfn._invoke_nested_start_execution, sfn)
    sfn._execute_task = _wrap_execute_task(sfn._execute_task)
    sfn._invoke_with_callback = _wrap_invoke_with_callback(sfn._invoke_with_callback, get_mock_response)
    sfn._invoke_resource = _wrap_invoke_resource(sfn._invoke_resource, get_mock_response)
    # The per-entry lookup at the top of _execute_task is replaced by the per-attempt one above.
    sfn._get_mock_response = lambda *_args: None
    _applied = True
