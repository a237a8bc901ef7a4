"""``plot-palette token USER``: a real ID token from the local Cognito pool (user created if needed)."""

from __future__ import annotations

import argparse
from typing import Any

from local.commands import CliError, running
from local.runtime.tokens import issue_token


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    token = sub.add_parser(
        "token", parents=[common], help="print a bearer token for USER (created if needed)"
    )
    token.add_argument("user")
    token.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    info = running(args)
    try:
        print(issue_token(info, args.user))
    except Exception as error:
        raise CliError(f"could not issue a token for {args.user!r}: {error}") from error
    return 0
