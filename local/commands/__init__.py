"""The subcommands of ``plot-palette``, one module each (``local/cli.py`` assembles the parser).

Each module has ``add_parser(subparsers, common)``, which declares its arguments and sets
``handler``, the function ``main`` calls with the parsed arguments; it returns the exit code or
raises ``CliError``.
"""

from __future__ import annotations

import argparse

from local.runtime.state import RuntimeInfo, RuntimeNotRunning, running_runtime


class CliError(Exception):
    """A failure the user can act on: printed without a traceback, exit code 1 (or ``code``)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def running(args: argparse.Namespace) -> RuntimeInfo:
    """The runtime of ``--state-dir``, or exit code 2 with the reason it is not running."""
    try:
        return running_runtime(args.state_dir.resolve())
    except RuntimeNotRunning as error:
        raise CliError(str(error), code=2) from error
