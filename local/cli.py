"""``plot-palette``: run the whole backend locally and look inside it (docs/local.md).

plot-palette local [--state-dir DIR] [--port N] [--workers N] [-c K=V]  run everything (foreground)
plot-palette url [--state-dir DIR]                                      the API base URL
plot-palette token USER [--state-dir DIR]                               a bearer token for USER
plot-palette executions JOB_ID [--state-dir DIR]                        a job's state machine history
plot-palette events [--follow] [--json] [--state-dir DIR]               events that crossed the bus

Each subcommand is a module of ``local/commands/``; this module only assembles the parser and maps
errors to exit codes.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from local.commands import CliError, events, executions, local, token, url
from local.runtime.state import DEFAULT_STATE_DIR

SUBCOMMANDS = (local, url, token, executions, events)


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
    for command in SUBCOMMANDS:
        command.add_parser(sub, common)
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
