"""``plot-palette url``: the API base URL of the running runtime."""

from __future__ import annotations

import argparse
from typing import Any

from local.commands import running


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    url = sub.add_parser("url", parents=[common], help="print the API base URL of the running runtime")
    url.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    print(running(args).api_url.rstrip("/"))
    return 0
