"""``runtime.json``: what ``plot-palette local`` records about itself, and whether it still runs.

The other subcommands (``url``, ``token``, ``executions``, ``events``) find a runtime through this
file, so several runtimes run side by side with different state dirs and ports.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.emulator import HOST, REGION, is_healthy

DEFAULT_STATE_DIR = Path(".plot-palette")
DEFAULT_PORT = 4566
RUNTIME_FILE = "runtime.json"
REPO_ROOT = Path(__file__).resolve().parents[2]

NOT_FOUND_HINT = (
    "the default state dir is .plot-palette in the current directory; "
    "pass --state-dir DIR or set PLOT_PALETTE_STATE_DIR to use another"
)


class RuntimeNotRunning(RuntimeError):
    """No runtime answers for a state dir; the message says why and what to run."""


@dataclass
class RuntimeInfo:
    """What ``plot-palette local`` records about itself for the other subcommands.

    ``environment`` holds the deployed resources by the environment variable each one fills
    (``JOBS_TABLE``, ``WORK_QUEUE_URL``, …; see ``local/runtime/resources.py``). ``ready_at`` is set
    once everything answers (emulator healthy, stack deployed, workers started, a token issued);
    ``stopped_at`` by a clean stop (a crash leaves it unset).
    """

    state_dir: Path
    port: int
    pid: int
    api_url: str
    api_id: str
    user_pool_id: str
    user_pool_client_id: str
    outputs: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    swagger_url: str | None = None
    started_at: float = 0.0
    emulator_pid: int | None = None
    worker_pids: list[int] = field(default_factory=list)
    ready_at: float | None = None
    stopped_at: float | None = None

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
            "environment": self.environment,
            "swagger_url": self.swagger_url,
            "started_at": self.started_at,
            "emulator_pid": self.emulator_pid,
            "worker_pids": self.worker_pids,
            "ready_at": self.ready_at,
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
            return cls._from_json(Path(state_dir), json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise RuntimeNotRunning(
                f"{path} is unreadable ({type(error).__name__}: {error}); it is rewritten at the next "
                f"`plot-palette local --state-dir {state_dir}` (or delete it)"
            ) from error

    @classmethod
    def _from_json(cls, state_dir: Path, data: dict[str, Any]) -> RuntimeInfo:
        return cls(
            state_dir=state_dir,
            port=int(data["port"]),
            pid=int(data["pid"]),
            api_url=data["api_url"],
            api_id=data["api_id"],
            user_pool_id=data["user_pool_id"],
            user_pool_client_id=data["user_pool_client_id"],
            outputs=data.get("outputs") or {},
            environment=data.get("environment") or {},
            swagger_url=data.get("swagger_url"),
            started_at=float(data.get("started_at") or 0),
            emulator_pid=_optional_int(data.get("emulator_pid")),
            worker_pids=[int(pid) for pid in data.get("worker_pids") or []],
            ready_at=_optional_float(data.get("ready_at")),
            stopped_at=_optional_float(data.get("stopped_at")),
        )

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",  # noqa: S106 - the emulator's fixed fake credentials
        )


def _optional_int(value: Any) -> int | None:
    return int(value) if value else None


def _optional_float(value: Any) -> float | None:
    return float(value) if value else None


def pid_alive(pid: int) -> bool:
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
    """The runtime recorded in ``state_dir`` if it is up and its emulator answers its health check.

    Ready or not: ``info.ready_at`` says whether the start finished (see ``ready_runtime``).
    """
    info = RuntimeInfo.load(state_dir)
    start = f"start it with `plot-palette local --state-dir {state_dir}`"
    if info.stopped_at:
        stopped = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.stopped_at))
        raise RuntimeNotRunning(
            f"the plot-palette runtime of state dir {state_dir} was stopped at {stopped}: {start}"
        )
    if not pid_alive(info.pid):
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


def ready_runtime(state_dir: Path) -> RuntimeInfo:
    """A running runtime that finished starting (what scripts and test fixtures wait for)."""
    info = running_runtime(state_dir)
    if info.ready_at is None:
        raise RuntimeNotRunning(
            f"the plot-palette runtime of state dir {state_dir} (process {info.pid}) is still starting"
        )
    return info


def leftover_processes(info: RuntimeInfo) -> list[tuple[str, int]]:
    """What a ``plot-palette local`` that died without a clean stop (kill -9, a crash) left running.

    The emulator and the workers run in their own sessions, so they outlive such a death and keep
    the port (and the work queue) busy. A pid counts only if it still looks like what was started:
    the emulator still answers on the recorded port, and where /proc tells, the command line matches.
    """
    if info.stopped_at or pid_alive(info.pid):
        return []
    left: list[tuple[str, int]] = []
    if info.emulator_pid and pid_alive(info.emulator_pid) and is_healthy(info.endpoint):
        cmdline = _cmdline(info.emulator_pid)
        if cmdline is None or "local.shims" in cmdline or "ministack" in cmdline:
            left.append(("emulator", info.emulator_pid))
    for pid in info.worker_pids:
        cmdline = _cmdline(pid)
        if pid_alive(pid) and cmdline is not None and "functions.worker" in cmdline:
            left.append(("worker", pid))
    return left
