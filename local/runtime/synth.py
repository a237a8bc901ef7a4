"""Synthesize the CDK app's ``local`` stage, the way the CDK CLI runs the app (cdk.json)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from local.runtime.state import REPO_ROOT
from local.runtime.stops import Interrupted

Progress = Callable[[str], None]

# Context the runtime always sets; ``-c`` cannot override them (the CLI says why).
FIXED_CONTEXT = {
    "stage": "the local runtime always synthesizes the local stage",
    "aws:cdk:bundling-stacks": "the local runtime never bundles (MiniStack runs handlers from the venv)",
}


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

    ``context`` is every ``-c KEY=VALUE`` given to ``plot-palette local``; it reaches the app the
    way the CDK CLI passes it (``CDK_CONTEXT_JSON``), so a new context value needs no code here:
    ``stacks/config.py`` reads it. Bundling is skipped (``aws:cdk:bundling-stacks = []``): MiniStack
    runs handlers with the project's own interpreter and venv, and a dependency layer built for the
    Lambda platform would shadow the venv with wheels for another Python. Returns the assembly
    directory of the local stage. A set ``stop`` ends the synth and raises Interrupted.
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
            [sys.executable, "-m", "stacks.app"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        _wait_for_synth(process, started + timeout, progress, stop, log_path)
    if process.returncode != 0:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(
            f"`python -m stacks.app` (stage local) failed (exit {process.returncode}); "
            f"log {log_path}:\n{tail}"
        )
    progress(f"  synthesized in {time.monotonic() - started:.0f} s")
    return local_assembly(out_dir)


def _wait_for_synth(
    process: subprocess.Popen[bytes],
    deadline: float,
    progress: Progress,
    stop: threading.Event | None,
    log_path: Path,
) -> None:
    waited = 0
    while process.poll() is None:
        if time.monotonic() > deadline:
            _end(process)
            raise RuntimeError(f"synth did not finish in time; see {log_path}")
        if stop is not None and stop.is_set():
            _end(process)
            raise Interrupted("stopped while synthesizing")
        if stop is not None:
            stop.wait(1)
        else:
            time.sleep(1)
        waited += 1
        if waited % 10 == 0:
            progress(f"  … still synthesizing ({waited} s)")


def _end(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait()


def local_assembly(out_dir: Path) -> Path:
    """The assembly holding the local stage: a nested stage assembly if the app uses Stages."""
    manifest = json.loads((out_dir / "manifest.json").read_text())
    for name, artifact in manifest.get("artifacts", {}).items():
        if artifact.get("type") == "cdk:cloud-assembly" and "local" in name.lower():
            return out_dir / artifact["properties"]["directoryName"]
    return out_dir
