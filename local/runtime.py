"""The embedded runtime: MiniStack + the deployed ``local`` stage + generation workers, in one state dir.

Layout of a state dir (default ``.plot-palette/``)::

    runtime.json        port, endpoint, API URL, stack outputs, pid of the ``local`` process
    emulator/           MiniStack's persisted state (DynamoDB, SQS, Cognito, CloudFormation, …)
    emulator/s3/        S3 object bodies
    cdk.out/            the synthesized ``local`` stage
    deploy.json         template digests of the last deploy (an unchanged stack is not re-sent)
    events.jsonl        every event that crossed the bus, oldest first (``plot-palette events``)
    logs/               emulator.log, synth.log, worker-N.log

The other subcommands (``url``, ``token``, ``executions``, ``events``) find a running runtime
through ``runtime.json``, so several runtimes run side by side with different state dirs and ports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from local.emulator import ACCOUNT_ID, HOST, REGION, is_healthy

DEFAULT_STATE_DIR = Path(".plot-palette")
DEFAULT_PORT = 4566
RUNTIME_FILE = "runtime.json"
EVENTS_FILE = "events.jsonl"
CAPTURE_NAME = "plot-palette-local-event-capture"
DEMO_USER = "demo"
REPO_ROOT = Path(__file__).resolve().parent.parent

Progress = Callable[[str], None]


class RuntimeNotRunning(RuntimeError):
    """No runtime answers for a state dir; the message says why and what to run."""


class Interrupted(RuntimeError):
    """A stop was requested (Ctrl-C, SIGTERM, SIGHUP) before the runtime was ready."""


NOT_FOUND_HINT = (
    "the default state dir is .plot-palette in the current directory; "
    "pass --state-dir DIR or set PLOT_PALETTE_STATE_DIR to use another"
)


# --------------------------------------------------------------------------- runtime.json


@dataclass
class RuntimeInfo:
    """What ``plot-palette local`` records about itself for the other subcommands."""

    state_dir: Path
    port: int
    pid: int
    api_url: str
    api_id: str
    user_pool_id: str
    user_pool_client_id: str
    outputs: dict[str, str] = field(default_factory=dict)
    resources: dict[str, str] = field(default_factory=dict)
    swagger_url: str | None = None
    started_at: float = 0.0
    emulator_pid: int | None = None
    worker_pids: list[int] = field(default_factory=list)
    stopped_at: float | None = None  # set by a clean stop; a crash leaves it unset

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def to_json(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "endpoint": self.endpoint,
            "pid": self.pid,
            "api_url": self.api_url,
            "api_id": self.api_id,
            "user_pool_id": self.user_pool_id,
            "user_pool_client_id": self.user_pool_client_id,
            "outputs": self.outputs,
            "resources": self.resources,
            "swagger_url": self.swagger_url,
            "started_at": self.started_at,
            "emulator_pid": self.emulator_pid,
            "worker_pids": self.worker_pids,
            "stopped_at": self.stopped_at,
        }

    def save(self) -> None:
        path = self.state_dir / RUNTIME_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, state_dir: Path) -> RuntimeInfo:
        path = Path(state_dir) / RUNTIME_FILE
        if not path.is_file():
            raise RuntimeNotRunning(
                f"no plot-palette runtime has been started with state dir {state_dir} ({NOT_FOUND_HINT}): "
                f"run `plot-palette local --state-dir {state_dir}` (or `make local`) first"
            )
        try:
            data = json.loads(path.read_text())
            return cls(
                state_dir=Path(state_dir),
                port=int(data["port"]),
                pid=int(data["pid"]),
                api_url=data["api_url"],
                api_id=data["api_id"],
                user_pool_id=data["user_pool_id"],
                user_pool_client_id=data["user_pool_client_id"],
                outputs=data.get("outputs") or {},
                resources=data.get("resources") or {},
                swagger_url=data.get("swagger_url"),
                started_at=float(data.get("started_at") or 0),
                emulator_pid=int(data["emulator_pid"]) if data.get("emulator_pid") else None,
                worker_pids=[int(pid) for pid in data.get("worker_pids") or []],
                stopped_at=float(data["stopped_at"]) if data.get("stopped_at") else None,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise RuntimeNotRunning(
                f"{path} is unreadable ({type(error).__name__}: {error}); it is rewritten at the next "
                f"`plot-palette local --state-dir {state_dir}` (or delete it)"
            ) from error

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",  # noqa: S106 - the emulator's fixed fake credentials
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> str | None:
    """The command line of ``pid`` where /proc tells it (Linux), else None."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


def running_runtime(state_dir: Path) -> RuntimeInfo:
    """The runtime recorded in ``state_dir`` if it is up and answering; else RuntimeNotRunning."""
    info = RuntimeInfo.load(state_dir)
    start = f"start it with `plot-palette local --state-dir {state_dir}`"
    if info.stopped_at:
        stopped = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.stopped_at))
        raise RuntimeNotRunning(
            f"the plot-palette runtime of state dir {state_dir} was stopped at {stopped}: {start}"
        )
    if not _pid_alive(info.pid):
        raise RuntimeNotRunning(
            f"the plot-palette runtime of state dir {state_dir} is not running (its process {info.pid} "
            f"ended without a clean stop; it was on port {info.port}): {start}"
        )
    if not is_healthy(info.endpoint):
        raise RuntimeNotRunning(
            f"the plot-palette runtime of state dir {state_dir} (process {info.pid}) has no emulator "
            f"answering on port {info.port}: it is starting or stopping, or MiniStack died "
            f"(see {Path(state_dir) / 'logs' / 'emulator.log'})"
        )
    return info


def leftover_processes(info: RuntimeInfo) -> list[tuple[str, int]]:
    """What a ``plot-palette local`` that died without a clean stop (kill -9, a crash) left running.

    The emulator and the workers run in their own sessions, so they outlive such a death and keep
    the port (and the work queue) busy. A pid counts only if it still looks like what was started:
    the emulator still answers on the recorded port, and where /proc tells, the command line matches.
    """
    if info.stopped_at or _pid_alive(info.pid):
        return []
    left: list[tuple[str, int]] = []
    if info.emulator_pid and _pid_alive(info.emulator_pid) and is_healthy(info.endpoint):
        cmdline = _cmdline(info.emulator_pid)
        if cmdline is None or "local.shims" in cmdline or "ministack" in cmdline:
            left.append(("emulator", info.emulator_pid))
    for pid in info.worker_pids:
        cmdline = _cmdline(pid)
        if _pid_alive(pid) and cmdline is not None and "functions.worker" in cmdline:
            left.append(("worker", pid))
    return left


# --------------------------------------------------------------------------- synth


def synth_local_stage(
    out_dir: Path,
    log_path: Path,
    progress: Progress,
    *,
    context: dict[str, Any] | None = None,
    timeout: float = 600.0,
    stop: threading.Event | None = None,
) -> Path:
    """Run the CDK app (``python -m stacks.app``, what cdk.json runs) for the ``local`` stage.

    Context and output directory reach the app the way the CDK CLI passes them
    (``CDK_CONTEXT_JSON``, ``CDK_OUTDIR``). Bundling is skipped (``aws:cdk:bundling-stacks = []``):
    MiniStack runs handlers with the project's own interpreter and venv, and a dependency layer built
    for the Lambda platform would shadow the venv with wheels for another Python. Returns the
    assembly directory of the local stage. A set ``stop`` ends the synth and raises Interrupted.
    """
    env = {
        **os.environ,
        "CDK_OUTDIR": str(out_dir),
        "CDK_CONTEXT_JSON": json.dumps({**(context or {}), "stage": "local", "aws:cdk:bundling-stacks": []}),
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
    }
    progress("synthesizing the CDK app's local stage (python -m stacks.app, ~10-30 s) …")
    started = time.monotonic()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "stacks.app"],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = started + timeout
        dots = 0
        while process.poll() is None:
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise RuntimeError(f"synth did not finish within {timeout:.0f} s; see {log_path}")
            if stop is not None and stop.is_set():
                process.kill()
                process.wait()
                raise Interrupted("stopped while synthesizing")
            if stop is not None:
                stop.wait(1)
            else:
                time.sleep(1)
            dots += 1
            if dots % 10 == 0:
                progress(f"  … still synthesizing ({dots} s)")
    if process.returncode != 0:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(
            f"`python -m stacks.app` (stage local) failed (exit {process.returncode}); "
            f"log {log_path}:\n{tail}"
        )
    progress(f"  synthesized in {time.monotonic() - started:.0f} s")
    return local_assembly(out_dir)


def local_assembly(out_dir: Path) -> Path:
    """The assembly holding the local stage: a nested stage assembly if the app uses Stages."""
    manifest = json.loads((out_dir / "manifest.json").read_text())
    nested = [
        (name, artifact)
        for name, artifact in manifest.get("artifacts", {}).items()
        if artifact.get("type") == "cdk:cloud-assembly"
    ]
    for name, artifact in nested:
        if "local" in name.lower():
            return out_dir / artifact["properties"]["directoryName"]
    return out_dir


# --------------------------------------------------------------------------- discovery


def stack_resources(cfn: Any, stack_names: list[str]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for name in stack_names:
        paginator = cfn.get_paginator("list_stack_resources")
        for page in paginator.paginate(StackName=name):
            found.extend(page["StackResourceSummaries"])
    return found


def _pick(resources: list[dict[str, Any]], resource_type: str, hint: str = "") -> str | None:
    matching = [r for r in resources if r["ResourceType"] == resource_type]
    if hint:
        hinted = [r for r in matching if hint.lower() in r["LogicalResourceId"].lower()]
        matching = hinted or matching
    return str(matching[0]["PhysicalResourceId"]) if matching else None


# The settings the workers and the CLI need, found by stack output name (exact setting name first)
# or, failing that, by resource type and a logical-id hint.
_SETTING_RESOURCES = {
    "JOBS_TABLE": ("AWS::DynamoDB::Table", "jobs"),
    "QUEUE_TABLE": ("AWS::DynamoDB::Table", "queue"),
    "TEMPLATES_TABLE": ("AWS::DynamoDB::Table", "templates"),
    "COST_TRACKING_TABLE": ("AWS::DynamoDB::Table", "cost"),
    "IDEMPOTENCY_TABLE": ("AWS::DynamoDB::Table", "idempotency"),
    "BUCKET_NAME": ("AWS::S3::Bucket", "data"),
    "EVENT_BUS_NAME": ("AWS::Events::EventBus", "bus"),
    "WORK_QUEUE_URL": ("AWS::SQS::Queue", "work"),
    "LIFECYCLE_STATE_MACHINE_ARN": ("AWS::StepFunctions::StateMachine", "lifecycle"),
    "CANCELLATION_STATE_MACHINE_ARN": ("AWS::StepFunctions::StateMachine", "cancel"),
    "CLEANUP_STATE_MACHINE_ARN": ("AWS::StepFunctions::StateMachine", "cleanup"),
}


def _output_for(outputs: dict[str, str], setting: str) -> str | None:
    if setting in outputs:
        return outputs[setting]
    compact = setting.replace("_", "").lower()
    for key, value in outputs.items():
        if key.replace("_", "").lower() == compact or key.lower().startswith(compact):
            return value
    return None


def discover(cfn: Any, stack_names: list[str], outputs: dict[str, str]) -> dict[str, str]:
    """Physical names of what the runtime talks to, from outputs first, then from stack resources."""
    resources = stack_resources(cfn, stack_names)
    found: dict[str, str] = {}
    for setting, (resource_type, hint) in _SETTING_RESOURCES.items():
        value = _output_for(outputs, setting) or _pick(resources, resource_type, hint)
        if value is None:
            continue
        if setting == "WORK_QUEUE_URL" and not value.startswith("http"):
            value = _queue_url_from_name(value)
        found[setting] = value
    for key, (resource_type, hint) in {
        "API_ID": ("AWS::ApiGatewayV2::Api", ""),
        "USER_POOL_ID": ("AWS::Cognito::UserPool", ""),
        "USER_POOL_CLIENT_ID": ("AWS::Cognito::UserPoolClient", ""),
    }.items():
        value = _output_for(outputs, key) or _pick(resources, resource_type, hint)
        if value is not None:
            found[key] = value
    return found


def _queue_url_from_name(value: str) -> str:
    name = value.rsplit(":", 1)[-1].rsplit("/", 1)[-1]
    return f"http://{HOST}/{ACCOUNT_ID}/{name}"


def api_base_url(endpoint: str, api_id: str) -> str:
    """The HTTP API's base URL on MiniStack (path form: resolvable without DNS tricks)."""
    return f"{endpoint}/_aws/execute-api/{api_id}"


# --------------------------------------------------------------------------- tokens

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


# --------------------------------------------------------------------------- events capture


def ensure_event_capture(info: RuntimeInfo) -> str | None:
    """A catch-all rule on the bus delivering to a queue the runtime drains into events.jsonl."""
    bus = info.resources.get("EVENT_BUS_NAME")
    if not bus:
        return None
    sqs, events = info.client("sqs"), info.client("events")
    queue_url = sqs.create_queue(QueueName=CAPTURE_NAME)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name=CAPTURE_NAME,
        EventBusName=bus,
        EventPattern=json.dumps({"source": [{"prefix": ""}]}),
        State="ENABLED",
        Description="plot-palette local runtime: every event, for `plot-palette events`",
    )
    events.put_targets(Rule=CAPTURE_NAME, EventBusName=bus, Targets=[{"Id": "capture", "Arn": queue_arn}])
    return str(queue_url)


class EventDrain(threading.Thread):
    """Moves captured events from the capture queue to events.jsonl (append-only, oldest first)."""

    def __init__(self, info: RuntimeInfo, queue_url: str) -> None:
        super().__init__(name="event-drain", daemon=True)
        self.info, self.queue_url = info, queue_url
        self.stopping = threading.Event()
        self.path = info.state_dir / EVENTS_FILE

    def run(self) -> None:
        sqs = self.info.client("sqs")
        while not self.stopping.is_set():
            try:
                messages = sqs.receive_message(
                    QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                ).get("Messages", [])
            except Exception:
                if self.stopping.wait(1):
                    return
                continue
            if not messages:
                continue
            with open(self.path, "a") as sink:
                for message in messages:
                    try:
                        event = json.loads(message["Body"])
                    except ValueError:
                        event = {"raw": message["Body"]}
                    sink.write(json.dumps(event, separators=(",", ":")) + "\n")
            sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )


# --------------------------------------------------------------------------- workers


def worker_environment(info: RuntimeInfo, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        **info.outputs,
        **{k: v for k, v in info.resources.items() if k.isupper()},
        "AWS_ENDPOINT_URL": info.endpoint,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "MODEL_PROVIDER": os.environ.get("MODEL_PROVIDER", "offline"),
        "POWERTOOLS_SERVICE_NAME": "worker",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("AWS_SESSION_TOKEN", None)
    env.update(extra or {})
    return env


@dataclass
class WorkerPool:
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[IO[bytes]] = field(default_factory=list)

    def start(
        self, info: RuntimeInfo, count: int, progress: Progress, extra: dict[str, str] | None = None
    ) -> None:
        if not (REPO_ROOT / "functions" / "worker").exists():
            progress("note: functions/worker does not exist yet: no generation worker started")
            return
        env = worker_environment(info, extra)
        for index in range(count):
            log_path = info.state_dir / "logs" / f"worker-{index + 1}.log"
            log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
            self.logs.append(log)
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "functions.worker"],
                    cwd=REPO_ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        progress(f"started {count} generation worker process(es) (logs in {info.state_dir / 'logs'})")

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def kill(self) -> None:
        """Kill every worker now (a third Ctrl-C): no clean stop."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()

    def check(self, progress: Progress) -> None:
        for index, process in enumerate(self.processes):
            if process.poll() is not None and process.returncode not in (0, None):
                progress(f"warning: worker {index + 1} exited with code {process.returncode}; see its log")
                process.returncode = 0  # report once

    def stop(self, timeout: float = 10.0) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + timeout
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        for log in self.logs:
            log.close()


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - loopback
            return int(answer.status), answer.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()
    except (urllib.error.URLError, OSError):
        return 0, b""
