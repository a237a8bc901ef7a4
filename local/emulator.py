"""Start and stop MiniStack (the AWS emulator) on a loopback port, as a child process.

Used by the local runtime (``plot-palette local``) and by every test fixture that needs the
emulator, so both run it the same way. MiniStack is pinned in pyproject.toml; see
../shared/EMULATOR-NOTES.md for what it does and does not emulate.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from local.shims import emulator_launcher

HOST = "127.0.0.1"
REGION = "us-east-1"
ACCOUNT_ID = "000000000000"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _ministack_executable() -> list[str]:
    found = Path(sys.executable).with_name("ministack")
    if found.exists():
        return [str(found)]
    on_path = shutil.which("ministack")
    if on_path:
        return [on_path]
    return [sys.executable, "-m", "ministack"]


@dataclass
class Emulator:
    """A running MiniStack. ``endpoint`` is its base URL; ``stop()`` ends it cleanly (state is saved)."""

    port: int
    process: subprocess.Popen[bytes]
    log_path: Path | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def client_kwargs(self) -> dict[str, Any]:
        """Arguments for ``boto3.client(service, **kwargs)`` aimed at this emulator."""
        return {
            "endpoint_url": self.endpoint,
            "region_name": REGION,
            "aws_access_key_id": "test",
            "aws_secret_access_key": "test",
        }

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, **self.client_kwargs())  # type: ignore[call-overload]

    def is_healthy(self) -> bool:
        return is_healthy(self.endpoint)

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.endpoint}/_ministack/reset", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310
            pass

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self._log is not None:
            self._log.close()


def is_healthy(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/_ministack/health", timeout=2) as answer:  # noqa: S310
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_emulator(
    *,
    port: int | None = None,
    state_dir: Path | None = None,
    log_path: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
    ready_timeout: float = 30.0,
    shims: bool = True,
) -> Emulator:
    """Start MiniStack bound to 127.0.0.1 and wait until it answers its health check.

    ``state_dir`` turns on persistence (DynamoDB, SQS, … and S3 bodies), saved on clean shutdown
    and, through the ``snapshots`` shim, every ``PLOT_PALETTE_SNAPSHOT_SECONDS`` (default 5).
    ``extra_env`` passes emulator settings such as ``SFN_WAIT_SCALE`` or ``SFN_MOCK_CONFIG``.
    ``shims`` launches it through ``python -m local.shims``, which installs the tested patches for
    what MiniStack lacks (see ``local/shims/``).
    """
    port = port or free_port()
    env = {
        **os.environ,
        "GATEWAY_PORT": str(port),
        "BIND_HOST": HOST,  # never listen beyond loopback
        "MINISTACK_REGION": REGION,
        "MINISTACK_HOST": HOST,
        "LOG_LEVEL": os.environ.get("MINISTACK_LOG_LEVEL", "WARNING"),
        # MiniStack 1.5.33 starts an IoT mTLS listener (8883) and an SFTP listener on 0.0.0.0
        # regardless of BIND_HOST; we use neither, so keep them off (loopback only).
        "IOT_MTLS_ENABLED": "0",
        "SFTP_ENABLED": "0",
        "SFTP_HOST": HOST,
    }
    if state_dir is not None:
        state_dir = Path(state_dir).resolve()
        (state_dir / "s3").mkdir(parents=True, exist_ok=True)
        env.update(
            {
                "PERSIST_STATE": "1",
                "STATE_DIR": str(state_dir),
                "S3_PERSIST": "1",
                "S3_DATA_DIR": str(state_dir / "s3"),
            }
        )
    env.update(extra_env or {})
    log: IO[bytes] | None = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")  # noqa: SIM115 - closed by Emulator.stop
    process = subprocess.Popen(  # noqa: S603 - our own pinned executable
        emulator_launcher() if shims else _ministack_executable(),
        env=env,
        stdout=log or subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop it in order
    )
    emulator = Emulator(port=port, process=process, log_path=log_path, _log=log)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            emulator.stop()
            raise RuntimeError(
                f"MiniStack exited with code {process.returncode} while starting"
                + (f"; see {log_path}" if log_path else "")
            )
        if emulator.is_healthy():
            return emulator
        time.sleep(0.1)
    emulator.stop()
    raise RuntimeError(f"MiniStack did not become healthy on port {port} within {ready_timeout:.0f} s")
