"""The settings the runtime starts MiniStack with, beyond what ``local/emulator.py`` always sets.

Each one can be overridden from the environment of ``plot-palette local`` (same name), e.g.
``LAMBDA_ACCOUNT_CONCURRENCY=200 make local``.

- ``LAMBDA_ACCOUNT_CONCURRENCY``: Lambda invocations in flight before the emulator answers
  ``TooManyRequestsException`` (HTTP 429 through the API). Each in-flight invocation is a warm Python
  subprocess of ~60-100 MB (the project's venv: boto3, Powertools, pydantic); 120 of them is ~12 GB
  at worst, which the 24 GB development machine holds next to everything else, and it leaves room
  for 50 concurrent API requests plus the stream consumers and state machine tasks they cause.
  The 2 cores only make a burst slower (each cold start costs ~0.5 s of CPU), never refused.
- ``LAMBDA_WARM_TTL_SECONDS``: a surplus warm subprocess left by a burst is reaped after this long
  idle (the first one per function always stays warm), so a burst's memory comes back in a minute.
- ``PLOT_PALETTE_SNAPSHOT_SECONDS``: how often the emulator's state is snapshotted to the state dir
  (local/shims/snapshots.py): the most a ``kill -9`` can lose.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from local.shims.snapshots import DEFAULT_SNAPSHOT_SECONDS, SNAPSHOT_SECONDS_ENV

LAMBDA_CONCURRENCY = 120
WARM_TTL_SECONDS = 60

DEFAULTS = {
    "LAMBDA_ACCOUNT_CONCURRENCY": str(LAMBDA_CONCURRENCY),
    "LAMBDA_WARM_TTL_SECONDS": str(WARM_TTL_SECONDS),
    SNAPSHOT_SECONDS_ENV: f"{DEFAULT_SNAPSHOT_SECONDS:g}",
}


def emulator_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The defaults above, each overridden by a non-empty variable of the same name."""
    environ = os.environ if environ is None else environ
    return {name: environ.get(name) or default for name, default in DEFAULTS.items()}
