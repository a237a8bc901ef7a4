"""``plot-palette``: run the whole backend locally and look inside it.

plot-palette local [--state-dir DIR] [--port N] [--workers N]   run everything (foreground)
plot-palette url [--state-dir DIR]                               the API base URL
plot-palette token USER [--state-dir DIR]                        a bearer token for USER
plot-palette executions JOB_ID [--state-dir DIR]                 a job's state machine history
plot-palette events [--follow] [--state-dir DIR]                 events that crossed the bus
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
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
    RuntimeInfo,
    RuntimeNotRunning,
    WorkerPool,
    api_base_url,
    discover,
    ensure_event_capture,
    http_get,
    issue_token,
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
    print(message, flush=True)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


# --------------------------------------------------------------------------- local


def _load_digests(state_dir: Path) -> dict[str, str]:
    path = state_dir / "deploy.json"
    return json.loads(path.read_text()) if path.exists() else {}


def cmd_local(args: argparse.Namespace) -> int:
    from local.deploy import DeployError, deploy_assembly, read_assembly

    state_dir: Path = args.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "logs").mkdir(exist_ok=True)
    try:
        info = running_runtime(state_dir)
    except RuntimeNotRunning:
        pass
    else:
        raise CliError(
            f"a runtime already runs with state dir {state_dir} (pid {info.pid}, {info.api_url}); "
            "stop it first (Ctrl-C in its terminal) or use another --state-dir"
        )
    port = args.port
    if not _port_free(port):
        raise CliError(
            f"port {port} on {HOST} is in use: pick another with `--port N` "
            "(each runtime needs its own port and its own --state-dir)"
        )
    context: dict[str, Any] = {}
    for item in args.context or []:
        key, _, value = item.partition("=")
        if not key or not _:
            raise CliError(f"--context takes KEY=VALUE, got {item!r}")
        context[key] = json.loads(value) if value.lstrip("-").isdigit() else value

    if args.assembly:
        assembly = local_assembly(args.assembly.resolve())
    else:
        try:
            assembly = synth_local_stage(
                state_dir / "cdk.out", state_dir / "logs" / "synth.log", _say, context=context
            )
        except RuntimeError as error:
            raise CliError(str(error)) from error

    _say(f"starting MiniStack on {HOST}:{port} (state in {state_dir / 'emulator'}) …")
    emulator = start_emulator(
        port=port,
        state_dir=state_dir / "emulator",
        log_path=state_dir / "logs" / "emulator.log",
        extra_env={"LAMBDA_ACCOUNT_CONCURRENCY": os.environ.get("LAMBDA_ACCOUNT_CONCURRENCY", "12")},
    )
    workers = WorkerPool()
    drain: EventDrain | None = None
    stop = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    previous_handlers = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
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
        workers.start(info, args.workers, _say)
        try:
            token = issue_token(info, DEMO_USER)
        except Exception as error:
            raise CliError(f"could not issue a token for the demo user: {error}") from error
        _print_banner(info, token)
        while not stop.wait(2):
            if emulator.process.poll() is not None:
                raise CliError(f"MiniStack exited unexpectedly; see {state_dir / 'logs' / 'emulator.log'}")
            workers.check(_say)
        _say("stopping (state is kept) …")
        return 0
    finally:
        workers.stop()
        if drain is not None:
            drain.stopping.set()
            drain.join(timeout=5)
        emulator.stop(timeout=30)
        for signum, handler in previous_handlers.items():
            signal.signal(signum, handler)


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


def describe_history(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Collapse an execution history into one row per state: name, type, entered, exited, error."""
    rows: list[dict[str, Any]] = []
    open_rows: dict[str, dict[str, Any]] = {}
    for event in events:
        kind = event["type"]
        if kind.endswith("StateEntered"):
            details = event["stateEnteredEventDetails"]
            row = {
                "state": details["name"],
                "type": kind.removesuffix("StateEntered"),
                "entered": event["timestamp"],
                "exited": None,
                "error": None,
            }
            rows.append(row)
            open_rows[details["name"]] = row
        elif kind.endswith("StateExited"):
            details = event["stateExitedEventDetails"]
            exited = open_rows.pop(details["name"], None)
            if exited is not None:
                exited["exited"] = event["timestamp"]
        elif kind.endswith("Failed") or kind.endswith("TimedOut") or kind.endswith("Aborted"):
            detail_key = next((k for k in event if k.endswith("EventDetails")), None)
            details = event.get(detail_key, {}) if detail_key else {}
            error = details.get("error") or kind
            cause = details.get("cause") or ""
            message = f"{error}: {cause[:200]}" if cause else error
            target = rows[-1] if rows else None
            if kind.startswith("Execution"):
                rows.append({"state": "(execution)", "type": kind, "entered": event["timestamp"],
                             "exited": event["timestamp"], "error": message})  # fmt: skip
            elif target is not None and target["error"] is None:
                target["error"] = message
    return rows


def cmd_executions(args: argparse.Namespace) -> int:
    info = _running(args)
    sfn = info.client("stepfunctions")
    machines = {key: arn for key, arn in info.resources.items() if key.endswith("STATE_MACHINE_ARN") and arn}
    lifecycle = machines.get("LIFECYCLE_STATE_MACHINE_ARN")
    if not lifecycle:
        raise CliError("the local stage has no lifecycle state machine (see stacks/)")
    executions: list[tuple[str, str]] = []
    name = lifecycle.split(":")[-1]
    lifecycle_execution = (
        f"arn:aws:states:{lifecycle.split(':')[3]}:{lifecycle.split(':')[4]}:execution:{name}:{args.job_id}"
    )
    try:
        sfn.describe_execution(executionArn=lifecycle_execution)
        executions.append(("lifecycle", lifecycle_execution))
    except sfn.exceptions.ExecutionDoesNotExist:
        pass
    for key, arn in machines.items():
        if arn == lifecycle:
            continue
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=arn):
            for execution in page["executions"]:
                described = sfn.describe_execution(executionArn=execution["executionArn"])
                if args.job_id in (described.get("input") or ""):
                    label = key.removesuffix("_STATE_MACHINE_ARN").lower()
                    executions.append((label, execution["executionArn"]))
    if not executions:
        raise CliError(
            f"no execution for job {args.job_id}: a job gets its lifecycle execution when it is promoted "
            "out of the queue (a QUEUED job has none yet); check the id with GET /jobs/{job_id}",
            code=2,
        )
    for label, arn in executions:
        described = sfn.describe_execution(executionArn=arn)
        history: list[dict[str, Any]] = []
        for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
            history.extend(page["events"])
        print(f"{label} execution {arn.split(':')[-1]}: {described['status']}")
        stopped = f", stopped {_fmt_time(described['stopDate'])}" if described.get("stopDate") else ""
        print(f"  started {_fmt_time(described['startDate'])}{stopped}")
        for row in describe_history(history):
            took = ""
            if row["exited"] is not None and isinstance(row["entered"], datetime):
                took = f"{(row['exited'] - row['entered']).total_seconds() * 1000:8.0f} ms"
            status = "✗ " + row["error"] if row["error"] else ("✓" if row["exited"] else "… running")
            print(f"  {_fmt_time(row['entered'])}  {took:>11}  {row['state']:<40} {status}")
        print()
    return 0


# --------------------------------------------------------------------------- events


def format_event(event: dict[str, Any]) -> str:
    detail = event.get("detail") or {}
    ids = " ".join(
        f"{key}={detail[key]}" for key in ("job_id", "template_id", "user_id", "status") if key in detail
    )
    return (
        f"{event.get('time', '?')}  {event.get('source', '?'):<24} {event.get('detail-type', '?'):<28} {ids}"
    )


def cmd_events(args: argparse.Namespace) -> int:
    state_dir = args.state_dir.resolve()
    path = state_dir / EVENTS_FILE
    if not args.follow:
        # Without --follow, recorded events are shown even when the runtime is stopped.
        if not path.exists():
            try:
                running_runtime(state_dir)
            except RuntimeNotRunning as error:
                raise CliError(str(error), code=2) from error
            return 0
    else:
        _running(args)
    position = 0

    def show_new() -> None:
        nonlocal position
        if not path.exists():
            return
        with open(path) as source:
            source.seek(position)
            for line in source:
                if not line.endswith("\n"):
                    break  # half-written line: read it next time
                position += len(line.encode())
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                print(json.dumps(event) if args.json else format_event(event), flush=True)

    show_new()
    if args.follow:
        try:
            while True:
                time.sleep(0.5)
                show_new()
        except KeyboardInterrupt:
            return 0
    return 0


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plot-palette", description="The plot-palette local runtime.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("PLOT_PALETTE_STATE_DIR", DEFAULT_STATE_DIR)),
        help="the runtime's state directory (default .plot-palette/; one per runtime)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    local = sub.add_parser("local", parents=[common], help="run the whole backend locally (foreground)")
    local.add_argument("--port", type=int, default=int(os.environ.get("PLOT_PALETTE_PORT", DEFAULT_PORT)))
    local.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("PLOT_PALETTE_WORKERS", "2")),
        help="generation worker processes (default 2)",
    )
    local.add_argument(
        "--context",
        "-c",
        action="append",
        metavar="KEY=VALUE",
        help="a CDK context value for the local stage, e.g. -c max_running_jobs=3 (see docs/deploy.md)",
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


if __name__ == "__main__":
    sys.exit(main())
