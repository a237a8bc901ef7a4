"""``plot-palette``: run the whole backend locally and look inside it.

plot-palette local [--state-dir DIR] [--port N] [--workers N]   run everything (foreground)
plot-palette url [--state-dir DIR]                               the API base URL
plot-palette token USER [--state-dir DIR]                        a bearer token for USER
plot-palette executions JOB_ID [--state-dir DIR]                 a job's state machine history
plot-palette events [--follow] [--state-dir DIR]                 events that crossed the bus
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from local.emulator import HOST, start_emulator
from local.runtime import (
    DEFAULT_PORT,
    DEFAULT_STATE_DIR,
    DEMO_USER,
    EVENTS_FILE,
    EventDrain,
    Interrupted,
    RuntimeInfo,
    RuntimeNotRunning,
    WorkerPool,
    api_base_url,
    discover,
    ensure_event_capture,
    http_get,
    issue_token,
    leftover_processes,
    local_assembly,
    running_runtime,
    synth_local_stage,
)


class CliError(Exception):
    """A failure the user can act on: printed without a traceback, exit code 1 (or ``code``)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _say(message: str) -> None:
    # The terminal may be gone (SIGHUP) or stdout closed: keep stopping cleanly regardless.
    with contextlib.suppress(OSError, ValueError):
        print(message, flush=True)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _port_in_use(port: int) -> CliError:
    also = " (LocalStack uses 4566 too)" if port == DEFAULT_PORT else ""
    return CliError(
        f"port {port} on {HOST} is in use{also}: pick another with `--port N` "
        "(each runtime needs its own port and its own --state-dir)"
    )


# --------------------------------------------------------------------------- argument types

_INTEGER = re.compile(r"[+-]?[0-9]+")
_CONTEXT_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_:.-]*")
_FIXED_CONTEXT = {
    "stage": "the local runtime always synthesizes the local stage",
    "aws:cdk:bundling-stacks": "the local runtime never bundles (MiniStack runs handlers from the venv)",
}


# Context values that configure the local worker processes (WorkerSettings), not the CDK app.
WORKER_CONTEXT = {
    "offline_latency_ms": "OFFLINE_LATENCY_MS",
    "offline_jitter_ms": "OFFLINE_JITTER_MS",
    "offline_rpm": "OFFLINE_RPM",
    "model_max_concurrency": "MODEL_MAX_CONCURRENCY",
}


def split_worker_context(context: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(the CDK context, the worker environment): worker keys become the workers' env vars."""
    worker = {WORKER_CONTEXT[k]: str(v) for k, v in context.items() if k in WORKER_CONTEXT}
    return {k: v for k, v in context.items() if k not in WORKER_CONTEXT}, worker


def parse_context_item(item: str) -> tuple[str, Any]:
    """One ``-c KEY=VALUE``: a whole number becomes an int, anything else stays a string.

    A bad form raises ArgumentTypeError, which argparse reports as a usage error (exit code 2).
    """
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. max_running_jobs=3), got {item!r}")
    if not _CONTEXT_KEY.fullmatch(key):
        raise argparse.ArgumentTypeError(
            f"{item!r} has no valid KEY before '=' (letters, digits, _ : . -; e.g. max_running_jobs=3)"
        )
    if key in _FIXED_CONTEXT:
        raise argparse.ArgumentTypeError(f"{key} cannot be set: {_FIXED_CONTEXT[key]}")
    if value == "":
        raise argparse.ArgumentTypeError(f"{key} has an empty value; to keep the default, leave out -c {key}")
    return key, int(value) if _INTEGER.fullmatch(value) else value


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 1-65535")
    return port


def worker_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of workers: {text!r}") from None
    if count < 0:
        raise argparse.ArgumentTypeError(f"--workers takes 0 or more, got {count}")
    return count


# --------------------------------------------------------------------------- local


class StopRequests:
    """Ctrl-C, SIGTERM and SIGHUP for ``plot-palette local``.

    The first asks for a clean stop (``requested`` is set): workers end, the emulator saves its state.
    The second says what it is waiting for. The third calls ``force`` (kill everything now; what
    changed since the start is lost), for when a clean stop hangs.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, say: Callable[[str], None] = _say) -> None:
        self.requested = threading.Event()
        self.count = 0
        self.force: Callable[[], None] | None = None
        self._say = say

    def __call__(self, signum: int, _frame: Any = None) -> None:
        self.count += 1
        if self.count == 1:
            self.requested.set()
            self._say("stopping (state is kept) …")
        elif self.count == 2:
            self._say(
                "still stopping: workers end, then the emulator saves its state (up to ~45 s). "
                "Ctrl-C once more kills everything now and loses what changed since the start."
            )
        else:
            self._say("killing the emulator and the workers now (unsaved state is lost) …")
            if self.force is not None:
                self.force()

    def check(self) -> None:
        """Raise Interrupted if a stop was requested (between the steps of a start)."""
        if self.requested.is_set():
            raise Interrupted("stopped before the runtime was ready")

    def install(self) -> Callable[[], None]:
        """Handle the signals in this (main) thread; returns what restores the previous handlers."""
        previous = {signum: signal.signal(signum, self) for signum in self.SIGNALS}

        def restore() -> None:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

        return restore


def _load_digests(state_dir: Path) -> dict[str, str]:
    path = state_dir / "deploy.json"
    try:
        digests = json.loads(path.read_text()) if path.exists() else {}
    except ValueError:
        return {}  # unreadable: every stack goes through UpdateStack once, which is harmless
    return digests if isinstance(digests, dict) else {}


def _prepare_state_dir(state_dir: Path) -> None:
    try:
        (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CliError(f"cannot use {state_dir} as the state dir: {error.strerror or error}") from error


def _refuse_if_taken(state_dir: Path, port: int) -> None:
    """A runtime of this state dir still runs, or a dead one left processes behind, or the port is busy."""
    try:
        info = running_runtime(state_dir)
    except RuntimeNotRunning:
        pass
    else:
        raise CliError(
            f"a runtime already runs with state dir {state_dir} (pid {info.pid}, {info.api_url}); "
            "stop it first (Ctrl-C in its terminal) or use another --state-dir"
        )
    try:
        previous = RuntimeInfo.load(state_dir)
    except RuntimeNotRunning:
        previous = None
    left = leftover_processes(previous) if previous is not None else []
    if left:
        listed = ", ".join(f"{what} {pid}" for what, pid in left)
        raise CliError(
            f"the last `plot-palette local` of {state_dir} ended without stopping what it started; "
            f"still running: {listed}. Stop them with `kill {' '.join(str(pid) for _, pid in left)}` "
            "(the emulator saves its state on that signal), then run this again"
        )
    if not _port_free(port):
        raise _port_in_use(port)


def cmd_local(args: argparse.Namespace) -> int:
    from local.deploy import DeployError, deploy_assembly, read_assembly

    state_dir: Path = args.state_dir.resolve()
    _prepare_state_dir(state_dir)
    port = args.port
    _refuse_if_taken(state_dir, port)
    context, worker_env = split_worker_context(dict(args.context or []))
    if context and args.assembly:
        raise CliError("-c/--context has no effect with --assembly (the assembly is already synthesized)", 2)

    stops = StopRequests()
    restore_signals = stops.install()
    workers = WorkerPool()
    drain: EventDrain | None = None
    emulator = None
    info: RuntimeInfo | None = None
    try:
        if args.assembly:
            try:
                assembly = local_assembly(args.assembly.resolve())
            except (OSError, ValueError) as error:
                raise CliError(f"{args.assembly} is not a synthesized cloud assembly: {error}") from error
        else:
            try:
                assembly = synth_local_stage(
                    state_dir / "cdk.out",
                    state_dir / "logs" / "synth.log",
                    _say,
                    context=context,
                    stop=stops.requested,
                )
            except Interrupted:
                raise
            except RuntimeError as error:
                raise CliError(str(error)) from error
        stops.check()
        if not _port_free(port):  # taken while we synthesized
            raise _port_in_use(port)

        _say(f"starting MiniStack on {HOST}:{port} (state in {state_dir / 'emulator'}) …")
        try:
            emulator = start_emulator(
                port=port,
                state_dir=state_dir / "emulator",
                log_path=state_dir / "logs" / "emulator.log",
                extra_env={"LAMBDA_ACCOUNT_CONCURRENCY": os.environ.get("LAMBDA_ACCOUNT_CONCURRENCY", "12")},
            )
        except RuntimeError as error:
            raise CliError(f"the emulator did not start: {error}") from error
        running = emulator

        def _force() -> None:
            workers.kill()
            if running.process.poll() is None:
                running.process.kill()

        stops.force = _force
        stops.check()
        _say("deploying the local stage …")
        started = time.monotonic()
        try:
            outputs, digests = deploy_assembly(
                emulator.client, assembly, previous=_load_digests(state_dir), progress=_say
            )
        except DeployError as error:
            raise CliError(f"deploy failed: {error}") from error
        (state_dir / "deploy.json").write_text(json.dumps(digests, indent=2))
        _say(f"  deployed in {time.monotonic() - started:.1f} s")
        stops.check()
        stacks = [stack.name for stack in read_assembly(assembly)]
        found = discover(emulator.client("cloudformation"), stacks, outputs)
        missing = [k for k in ("API_ID", "USER_POOL_ID", "USER_POOL_CLIENT_ID") if k not in found]
        if missing:
            raise CliError(
                f"the local stage has no {', '.join(missing)}: it needs an HTTP API and a Cognito user pool "
                "with a client (see stacks/)"
            )
        info = RuntimeInfo(
            state_dir=state_dir,
            port=port,
            pid=os.getpid(),
            api_url=api_base_url(emulator.endpoint, found["API_ID"]),
            api_id=found["API_ID"],
            user_pool_id=found["USER_POOL_ID"],
            user_pool_client_id=found["USER_POOL_CLIENT_ID"],
            outputs=outputs,
            resources=found,
            started_at=time.time(),
            emulator_pid=emulator.process.pid,
        )
        for path in ("/docs", "/swagger"):
            status, _ = http_get(info.api_url + path)
            if status == 200:
                info.swagger_url = info.api_url + path
                break
        info.save()
        queue_url = ensure_event_capture(info)
        if queue_url:
            drain = EventDrain(info, queue_url)
            drain.start()
        workers.start(info, args.workers, _say, worker_env)
        info.worker_pids = workers.pids
        info.save()
        stops.check()
        try:
            token = issue_token(info, DEMO_USER)
        except Exception as error:
            raise CliError(f"could not issue a token for the demo user: {error}") from error
        stops.check()
        _print_banner(info, token)
        while not stops.requested.wait(2):
            if emulator.process.poll() is not None:
                raise CliError(f"MiniStack exited unexpectedly; see {state_dir / 'logs' / 'emulator.log'}")
            workers.check(_say)
        return 0
    except Interrupted:
        _say("stopped before the runtime was ready (state is kept)")
        return 130
    finally:
        workers.stop()
        if drain is not None:
            drain.stopping.set()
            drain.join(timeout=5)
        if emulator is not None:
            emulator.stop(timeout=30)
        if info is not None:
            info.stopped_at = time.time()
            info.save()
        restore_signals()


def _print_banner(info: RuntimeInfo, token: str) -> None:
    state = info.state_dir
    flag = "" if state == DEFAULT_STATE_DIR.resolve() else f" --state-dir {state}"
    lines = [
        "",
        "plot-palette is running locally.",
        f"  API base URL   {info.api_url}",
        f"  Swagger UI     {info.swagger_url or '(the API serves none)'}",
        f"  Health         curl {info.api_url}/health",
        f"  Demo user      {DEMO_USER}; bearer token (valid 1 h):",
        "",
        token,
        "",
        f"  More tokens    plot-palette token USER{flag}",
        f'  Try it         curl -H "Authorization: Bearer $(plot-palette token {DEMO_USER}{flag})" '
        f"{info.api_url}/templates",
        f"  Inside         plot-palette executions JOB_ID{flag}  |  plot-palette events --follow{flag}",
        f"  Emulator       {info.endpoint} (any credentials; region us-east-1)",
        f"  State & logs   {state} (delete it to start from scratch)",
        "Ctrl-C stops everything and keeps the state.",
        "",
    ]
    _say("\n".join(lines))


# --------------------------------------------------------------------------- url, token


def _running(args: argparse.Namespace) -> RuntimeInfo:
    try:
        return running_runtime(args.state_dir.resolve())
    except RuntimeNotRunning as error:
        raise CliError(str(error), code=2) from error


def cmd_url(args: argparse.Namespace) -> int:
    print(_running(args).api_url.rstrip("/"))
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    info = _running(args)
    try:
        print(issue_token(info, args.user))
    except Exception as error:
        raise CliError(f"could not issue a token for {args.user!r}: {error}") from error
    return 0


# --------------------------------------------------------------------------- executions


def _fmt_time(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%H:%M:%S.%f")[:-3]
    return str(value)


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _failure_message(event: dict[str, Any]) -> str:
    kind = event["type"]
    detail_key = next((k for k in event if k.endswith("EventDetails")), None)
    details = event.get(detail_key, {}) if detail_key else {}
    error = details.get("error") or kind
    cause = details.get("cause") or ""
    return f"{error}: {_one_line(cause)}" if cause else str(error)


_FAILURE_SUFFIXES = ("Failed", "TimedOut", "Aborted")
_NOT_CAUGHT = {"ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"}
_ATTEMPT_SUCCESS = ("TaskSucceeded", "LambdaFunctionSucceeded", "ActivitySucceeded")


def describe_history(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Collapse an execution history into one row per state entered.

    A row has ``state``, ``type``, ``entered``, ``exited`` (None while it runs), ``failures`` (the
    messages of its failed attempts, oldest first) and ``error``: the failure that ended the state
    (a retried attempt that later succeeded is not an error, it only counts in ``failures``).
    An execution that failed, timed out or was aborted adds a last ``(execution)`` row.
    """
    rows: list[dict[str, Any]] = []
    open_rows: list[dict[str, Any]] = []  # entered and not exited yet, oldest first
    for event in events:
        kind = event["type"]
        if kind.endswith("StateEntered"):
            row: dict[str, Any] = {
                "state": event["stateEnteredEventDetails"]["name"],
                "type": kind.removesuffix("StateEntered"),
                "entered": event["timestamp"],
                "exited": None,
                "failures": [],
                "error": None,
            }
            rows.append(row)
            open_rows.append(row)
        elif kind.endswith("StateExited"):
            name = event["stateExitedEventDetails"]["name"]
            exited = next((r for r in reversed(open_rows) if r["state"] == name), None)
            if exited is not None:
                exited["exited"] = event["timestamp"]
                open_rows.remove(exited)
        elif kind.startswith("Execution") and kind.endswith((*_FAILURE_SUFFIXES, "Succeeded")):
            for row in open_rows:  # the execution ended them: a Fail state, or whatever ran when it stopped
                row["exited"] = event["timestamp"]
                if row["type"] != "Fail" and not kind.endswith("Succeeded"):
                    row["error"] = f"interrupted by {kind}"
            open_rows.clear()
            if kind.endswith("Succeeded"):
                continue
            rows.append(
                {
                    "state": "(execution)",
                    "type": kind,
                    "entered": event["timestamp"],
                    "exited": event["timestamp"],
                    "failures": [_failure_message(event)],
                    "error": _failure_message(event),
                }
            )
        elif kind.endswith(_FAILURE_SUFFIXES) and open_rows:
            target = open_rows[-1]
            target["failures"].append(_failure_message(event))
            target["error"] = target["failures"][-1]
        elif kind in _ATTEMPT_SUCCESS and open_rows:
            open_rows[-1]["error"] = None  # a retry succeeded
    return rows


def _row_status(row: dict[str, Any]) -> str:
    if row["type"] == "Fail":
        return "✗ (a Fail state: ends the execution)"
    if row["error"]:
        notes = []
        if len(row["failures"]) > 1:
            notes.append(f"{len(row['failures'])} attempts")
        if row["exited"] is not None and row["type"] not in _NOT_CAUGHT and row["failures"]:
            notes.append("caught")
        return f"✗ {row['error']}" + (f" ({', '.join(notes)})" if notes else "")
    if row["exited"] is None:
        return "… running"
    retries = len(row["failures"])
    if retries:
        attempts = "retry" if retries == 1 else "retries"
        return f"✓ after {retries} {attempts} (last: {row['failures'][-1].split(':')[0]})"
    return "✓"


def execution_report(label: str, described: dict[str, Any], history: list[dict[str, Any]]) -> list[str]:
    """The lines ``plot-palette executions`` prints for one execution (describe_execution + history)."""
    name = str(described["executionArn"]).split(":")[-1]
    lines = [f"{label} execution {name}: {described['status']}"]
    stopped = f", stopped {_fmt_time(described['stopDate'])}" if described.get("stopDate") else ""
    lines.append(f"  started {_fmt_time(described['startDate'])}{stopped}")
    rows = describe_history(history)
    width = max([40, *(len(row["state"]) for row in rows)])
    for row in rows:
        took = ""
        if row["exited"] is not None and isinstance(row["entered"], datetime):
            took = f"{(row['exited'] - row['entered']).total_seconds() * 1000:8.0f} ms"
        lines.append(f"  {_fmt_time(row['entered'])}  {took:>11}  {row['state']:<{width}} {_row_status(row)}")
    return lines


def _execution_exists(sfn: Any, arn: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        sfn.describe_execution(executionArn=arn)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in {"ExecutionDoesNotExist", "InvalidArn"}:
            return False
        raise
    return True


def cmd_executions(args: argparse.Namespace) -> int:
    job_id = args.job_id.strip()
    if not _JOB_ID.fullmatch(job_id):
        raise CliError(f"{args.job_id!r} is not a job id (a job id is a UUID, as POST /jobs answers)", 2)
    info = _running(args)
    sfn = info.client("stepfunctions")
    machines = {key: arn for key, arn in info.resources.items() if key.endswith("STATE_MACHINE_ARN") and arn}
    lifecycle = machines.get("LIFECYCLE_STATE_MACHINE_ARN")
    if not lifecycle:
        raise CliError("the local stage has no lifecycle state machine (see stacks/)")
    executions: list[tuple[str, str]] = []
    region, account, _, name = lifecycle.split(":")[3:7]
    lifecycle_execution = f"arn:aws:states:{region}:{account}:execution:{name}:{job_id}"
    if _execution_exists(sfn, lifecycle_execution):
        executions.append(("lifecycle", lifecycle_execution))
    for key, arn in machines.items():
        if arn == lifecycle:
            continue
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=arn):
            for execution in page["executions"]:
                described = sfn.describe_execution(executionArn=execution["executionArn"])
                if job_id in (described.get("input") or ""):
                    label = key.removesuffix("_STATE_MACHINE_ARN").lower()
                    executions.append((label, execution["executionArn"]))
    if not executions:
        raise CliError(
            f"no execution for job {job_id}: a job gets its lifecycle execution when it is promoted "
            "out of the queue (a QUEUED job has none yet); check the id with GET /jobs/{job_id}",
            code=2,
        )
    for label, arn in executions:
        described = sfn.describe_execution(executionArn=arn)
        history: list[dict[str, Any]] = []
        for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
            history.extend(page["events"])
        print("\n".join(execution_report(label, described, history)))
        print()
    return 0


_JOB_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


# --------------------------------------------------------------------------- events


def format_event(event: dict[str, Any]) -> str:
    """One line of ``plot-palette events``: time, source, detail type, and the ids in the detail."""
    if "raw" in event and "detail-type" not in event:
        return f"{'?':<20}  (not an EventBridge event) {_one_line(str(event['raw']))}"
    detail = event.get("detail")
    if not isinstance(detail, dict):
        detail = {}
    ids = " ".join(
        f"{key}={detail[key]}" for key in ("job_id", "template_id", "user_id", "status") if key in detail
    )
    return (
        f"{event.get('time', '?')}  {event.get('source', '?'):<24} {event.get('detail-type', '?'):<28} {ids}"
    ).rstrip()


class EventTail:
    """Reads the events appended to events.jsonl since the last read, complete lines only.

    A half-written last line waits for the next read. A file that shrank or was replaced (the state
    dir was deleted and the runtime started again) is read again from its start.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.position = 0
        self._inode: int | None = None

    def read_new(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as source:
                stat = os.fstat(source.fileno())
                if stat.st_ino != self._inode or stat.st_size < self.position:
                    self._inode, self.position = stat.st_ino, 0
                source.seek(self.position)
                data = source.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self.position += len(complete)
        events: list[dict[str, Any]] = []
        for line in complete.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events


def cmd_events(args: argparse.Namespace) -> int:
    state_dir = args.state_dir.resolve()
    path = state_dir / EVENTS_FILE
    if args.follow:
        _running(args)
    elif not path.exists():
        # Without --follow, recorded events are shown even when the runtime is stopped.
        try:
            running_runtime(state_dir)
        except RuntimeNotRunning as error:
            raise CliError(str(error), code=2) from error
        print("(no event has crossed the bus yet)", file=sys.stderr)
        return 0
    tail = EventTail(path)

    def show_new() -> None:
        for event in tail.read_new():
            print(json.dumps(event) if args.json else format_event(event), flush=True)

    if not args.follow:
        show_new()
        return 0
    # Following ends on Ctrl-C or SIGTERM, cleanly (exit 0). The handlers come first, so a signal
    # that arrives while the backlog prints ends it the same way.
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        show_new()
        while not stop.wait(0.5):
            show_new()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plot-palette", description="The plot-palette local runtime.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("PLOT_PALETTE_STATE_DIR") or DEFAULT_STATE_DIR),
        help="the runtime's state directory (default .plot-palette/; one per runtime)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    local = sub.add_parser("local", parents=[common], help="run the whole backend locally (foreground)")
    local.add_argument(
        "--port",
        type=port_number,
        default=os.environ.get("PLOT_PALETTE_PORT") or str(DEFAULT_PORT),
        help=f"the emulator's port on {HOST} (default {DEFAULT_PORT}, or PLOT_PALETTE_PORT)",
    )
    local.add_argument(
        "--workers",
        type=worker_count,
        default=os.environ.get("PLOT_PALETTE_WORKERS") or "2",
        help="generation worker processes (default 2, or PLOT_PALETTE_WORKERS)",
    )
    local.add_argument(
        "--context",
        "-c",
        action="append",
        type=parse_context_item,
        metavar="KEY=VALUE",
        help="a CDK context value for the local stage, e.g. -c max_running_jobs=3 (see docs/deploy.md);"
        " offline_latency_ms, offline_jitter_ms, offline_rpm and model_max_concurrency set the workers"
        " (see docs/local.md)",
    )
    local.add_argument("--assembly", type=Path, help="deploy this synthesized cloud assembly (skip synth)")
    local.set_defaults(handler=cmd_local)

    url = sub.add_parser("url", parents=[common], help="print the API base URL of the running runtime")
    url.set_defaults(handler=cmd_url)

    token = sub.add_parser(
        "token", parents=[common], help="print a bearer token for USER (created if needed)"
    )
    token.add_argument("user")
    token.set_defaults(handler=cmd_token)

    executions = sub.add_parser("executions", parents=[common], help="a job's state machine history")
    executions.add_argument("job_id")
    executions.set_defaults(handler=cmd_executions)

    events = sub.add_parser("events", parents=[common], help="the events that crossed the bus, newest last")
    events.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    events.add_argument("--json", action="store_true", help="one JSON event per line")
    events.set_defaults(handler=cmd_events)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except CliError as error:
        print(f"plot-palette: {error}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `plot-palette events | head`: the reader left. No traceback; the shell's SIGPIPE status.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
