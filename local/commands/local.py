"""``plot-palette local``: synth the local stage, start MiniStack, deploy, start workers; run until Ctrl-C.

The steps, in order (``LocalRun``): refuse a taken state dir or port; synthesize (or take
``--assembly``); start the emulator (local/emulator.py, with local/runtime/settings.py); deploy
(local/deploy.py); read the resources from the stack outputs (local/runtime/resources.py); record
``runtime.json``; start the event capture and the workers; issue the demo user's token; mark the
runtime ready and print the banner. Ctrl-C stops the workers, then the emulator (which saves its
state), and records the clean stop.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from local.commands import CliError
from local.deploy import DeployError, deploy_assembly
from local.emulator import HOST, Emulator, start_emulator
from local.runtime.capture import EventDrain, ensure_event_capture
from local.runtime.resources import MissingOutputs, api_base_url, environment_from_outputs
from local.runtime.settings import emulator_settings
from local.runtime.state import (
    DEFAULT_PORT,
    DEFAULT_STATE_DIR,
    RuntimeInfo,
    RuntimeNotRunning,
    leftover_processes,
    running_runtime,
)
from local.runtime.stops import Interrupted, StopRequests, say
from local.runtime.synth import FIXED_CONTEXT, local_assembly, synth_local_stage
from local.runtime.tokens import DEMO_USER, issue_token
from local.runtime.workers import WorkerPool
from local.shims import ShimNotApplicable
from local.shims.snapshots import snapshot_interval

# --------------------------------------------------------------------------- arguments

_INTEGER = re.compile(r"[+-]?[0-9]+")
_CONTEXT_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_:.-]*")


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

    Any key is passed on to the CDK app as context (stacks/config.py reads it), so a new context
    value needs nothing here. A bad form raises ArgumentTypeError: a usage error (exit code 2).
    """
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. max_running_jobs=3), got {item!r}")
    if not _CONTEXT_KEY.fullmatch(key):
        raise argparse.ArgumentTypeError(
            f"{item!r} has no valid KEY before '=' (letters, digits, _ : . -; e.g. max_running_jobs=3)"
        )
    if key in FIXED_CONTEXT:
        raise argparse.ArgumentTypeError(f"{key} cannot be set: {FIXED_CONTEXT[key]}")
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


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
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
    local.set_defaults(handler=run)


# --------------------------------------------------------------------------- before starting


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


def load_digests(state_dir: Path) -> dict[str, str]:
    """The template digests of the last deploy (``deploy.json``); empty when missing or unreadable."""
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


def _refuse_if_running(state_dir: Path) -> None:
    try:
        info = running_runtime(state_dir)
    except RuntimeNotRunning:
        return
    raise CliError(
        f"a runtime already runs with state dir {state_dir} (pid {info.pid}, {info.api_url}); "
        "stop it first (Ctrl-C in its terminal) or use another --state-dir"
    )


def _refuse_leftovers(state_dir: Path) -> None:
    try:
        previous = RuntimeInfo.load(state_dir)
    except RuntimeNotRunning:
        return
    left = leftover_processes(previous)
    if left:
        listed = ", ".join(f"{what} {pid}" for what, pid in left)
        raise CliError(
            f"the last `plot-palette local` of {state_dir} ended without stopping what it started; "
            f"still running: {listed}. Stop them with `kill {' '.join(str(pid) for _, pid in left)}` "
            "(the emulator saves its state on that signal), then run this again"
        )


def _refuse_if_taken(state_dir: Path, port: int) -> None:
    """A runtime of this state dir still runs, or a dead one left processes behind, or the port is busy."""
    _refuse_if_running(state_dir)
    _refuse_leftovers(state_dir)
    if not _port_free(port):
        raise _port_in_use(port)


def _http_status(url: str, timeout: float = 5.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - loopback
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, OSError):
        return 0


# --------------------------------------------------------------------------- the run


class LocalRun:
    """One ``plot-palette local``: what it started, so ``stop`` ends exactly that, in order."""

    def __init__(self, args: argparse.Namespace, state_dir: Path) -> None:
        self.args, self.state_dir, self.port = args, state_dir, args.port
        self.context, self.worker_env = split_worker_context(dict(args.context or []))
        self.stops = StopRequests()
        self.workers = WorkerPool()
        self.drain: EventDrain | None = None
        self.emulator: Emulator | None = None
        self.info: RuntimeInfo | None = None

    def assembly(self) -> Path:
        if self.args.assembly:
            try:
                return local_assembly(self.args.assembly.resolve())
            except (OSError, ValueError) as error:
                raise CliError(
                    f"{self.args.assembly} is not a synthesized cloud assembly: {error}"
                ) from error
        try:
            return synth_local_stage(
                self.state_dir / "cdk.out",
                self.state_dir / "logs" / "synth.log",
                say,
                context=self.context,
                stop=self.stops.requested,
            )
        except Interrupted:
            raise
        except RuntimeError as error:
            raise CliError(str(error)) from error

    def start_emulator(self) -> Emulator:
        if not _port_free(self.port):  # taken while we synthesized
            raise _port_in_use(self.port)
        say(f"starting MiniStack on {HOST}:{self.port} (state in {self.state_dir / 'emulator'}) …")
        try:
            self.emulator = start_emulator(
                port=self.port,
                state_dir=self.state_dir / "emulator",
                log_path=self.state_dir / "logs" / "emulator.log",
                extra_env=emulator_settings(),
            )
        except RuntimeError as error:
            raise CliError(f"the emulator did not start: {error}") from error
        self.stops.force = self.force
        return self.emulator

    def deploy(self, emulator: Emulator, assembly: Path) -> dict[str, str]:
        say("deploying the local stage …")
        started = time.monotonic()
        try:
            outputs, digests = deploy_assembly(
                emulator.client, assembly, previous=load_digests(self.state_dir), progress=say
            )
        except DeployError as error:
            raise CliError(f"deploy failed: {error}") from error
        (self.state_dir / "deploy.json").write_text(json.dumps(digests, indent=2))
        say(f"  deployed in {time.monotonic() - started:.1f} s")
        return outputs

    def record(self, emulator: Emulator, outputs: dict[str, str]) -> RuntimeInfo:
        try:
            environment = environment_from_outputs(outputs)
        except MissingOutputs as error:
            raise CliError(str(error)) from error
        api_url = api_base_url(emulator.endpoint, environment["API_ID"])
        self.info = RuntimeInfo(
            state_dir=self.state_dir,
            port=self.port,
            pid=os.getpid(),
            api_url=api_url,
            api_id=environment["API_ID"],
            user_pool_id=environment["USER_POOL_ID"],
            user_pool_client_id=environment["USER_POOL_CLIENT_ID"],
            outputs=outputs,
            environment=environment,
            swagger_url=next(
                (api_url + p for p in ("/docs", "/swagger") if _http_status(api_url + p) == 200), None
            ),
            started_at=time.time(),
            emulator_pid=emulator.process.pid,
        )
        self.info.save()
        return self.info

    def start_workers(self, info: RuntimeInfo) -> None:
        self.drain = EventDrain(info, ensure_event_capture(info))
        self.drain.start()
        self.workers.start(info, self.args.workers, say, self.worker_env)
        info.worker_pids = self.workers.pids
        info.save()

    def ready(self, info: RuntimeInfo) -> None:
        try:
            token = issue_token(info, DEMO_USER)
        except Exception as error:
            raise CliError(f"could not issue a token for the demo user: {error}") from error
        self.stops.check()
        info.ready_at = time.time()
        info.save()
        say(banner(info, token))

    def serve(self, emulator: Emulator) -> None:
        while not self.stops.requested.wait(2):
            if emulator.process.poll() is not None:
                raise CliError(
                    f"MiniStack exited unexpectedly; see {self.state_dir / 'logs' / 'emulator.log'}"
                )
            self.workers.check(say)

    def force(self) -> None:
        """Kill the workers and the emulator now (a third Ctrl-C)."""
        self.workers.kill()
        if self.emulator is not None and self.emulator.process.poll() is None:
            self.emulator.process.kill()

    def stop(self) -> None:
        self.workers.stop()
        if self.drain is not None:
            self.drain.stop()
        if self.emulator is not None:
            self.emulator.stop(timeout=30)
        if self.info is not None:
            self.info.stopped_at = time.time()
            self.info.save()

    def start_and_serve(self) -> None:
        assembly = self.assembly()
        self.stops.check()
        emulator = self.start_emulator()
        self.stops.check()
        outputs = self.deploy(emulator, assembly)
        self.stops.check()
        info = self.record(emulator, outputs)
        self.start_workers(info)
        self.stops.check()
        self.ready(info)
        self.serve(emulator)


def run(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir.resolve()
    _prepare_state_dir(state_dir)
    _refuse_if_taken(state_dir, args.port)
    if split_worker_context(dict(args.context or []))[0] and args.assembly:
        raise CliError("-c/--context has no effect with --assembly (the assembly is already synthesized)", 2)
    runtime = LocalRun(args, state_dir)
    restore_signals = runtime.stops.install()
    try:
        runtime.start_and_serve()
        return 0
    except Interrupted:
        say("stopped before the runtime was ready (state is kept)")
        return 130
    finally:
        runtime.stop()
        restore_signals()


def _saved() -> str:
    try:
        window = snapshot_interval(emulator_settings())
    except ShimNotApplicable:  # a bad value: the shim stays out (its warning is in the emulator log)
        window = 0
    return f"saved every {window:g} s and on stop" if window else "saved on stop"


def banner(info: RuntimeInfo, token: str) -> str:
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
        f"  State & logs   {state} ({_saved()}; delete it to start from scratch)",
        "Ctrl-C stops everything and keeps the state.",
        "",
    ]
    return "\n".join(lines)
