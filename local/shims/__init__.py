"""Shims that cover what MiniStack (pinned 1.5.33) lacks and the system relies on.

Each shim is a module here with an ``install()`` function that patches MiniStack in its own process
before it starts serving; ``python -m local.shims`` installs them all and runs MiniStack's normal
entry point. The ASL files and the handlers never bend to the emulator: a shim makes the emulator
behave like AWS instead. Every shim checks the MiniStack version it was written against and stays
out (with a warning in the emulator log) on any other version.

Adding a shim: a new module in this package with ``install() -> None`` (raise ``ShimNotApplicable``
to skip it); it is picked up automatically. The shims: ``lambda_pool`` (bursts wait for a warm
worker), ``snapshots`` (periodic state snapshots), ``stepfunctions`` (S3 ``deleteObjects``,
heartbeat timeouts), ``stream_batches`` (stream failure handling and restarts).
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
from importlib.metadata import version

SHIMMED_VERSION = "1.5.33"
logger = logging.getLogger("plot-palette.shims")


class ShimNotApplicable(RuntimeError):
    """The shim does not apply (other MiniStack version, behaviour already present, …)."""


def require_version(name: str) -> None:
    found = version("ministack")
    if found != SHIMMED_VERSION:
        raise ShimNotApplicable(f"{name} was written for MiniStack {SHIMMED_VERSION}, found {found}")


def install_all() -> list[str]:
    """Install every shim of this package; returns the names installed."""
    installed = []
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        if not hasattr(module, "install"):
            continue
        try:
            module.install()
        except ShimNotApplicable as reason:
            logger.warning("shim %s not installed: %s", module_info.name, reason)
            continue
        installed.append(module_info.name)
    return installed


def emulator_launcher() -> list[str]:
    """The command that starts MiniStack with every shim installed (for ``start_emulator``)."""
    return [sys.executable, "-m", "local.shims"]
