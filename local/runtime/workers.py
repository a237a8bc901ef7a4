"""The generation workers: ``python -m functions.worker`` processes instead of the ECS service."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from local.emulator import REGION
from local.runtime.state import REPO_ROOT, RuntimeInfo

Progress = Callable[[str], None]


def worker_environment(info: RuntimeInfo, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The stack's local outputs (by the variables they are named after) + the emulator's endpoint.

    The same resource variables the ECS task definition sets in AWS (stacks/worker.py), so the
    worker needs nothing local-specific beyond the endpoint and the offline model.
    """
    env = {
        **os.environ,
        **info.environment,
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
        env = worker_environment(info, extra)
        for index in range(count):
            log = open(info.state_dir / "logs" / f"worker-{index + 1}.log", "ab")  # noqa: SIM115 - closed in stop()
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
