"""The settings the runtime starts MiniStack with, beyond what ``local/emulator.py`` always sets.

Each one can be overridden from the environment of ``plot-palette local`` (same name), e.g.
``LAMBDA_ACCOUNT_CONCURRENCY=200 make local``.

- ``LAMBDA_ACCOUNT_CONCURRENCY``: Lambda invocations in flight (running or waiting for a warm
  worker) before the emulator answers ``TooManyRequestsException`` (HTTP 429 through the API).
  120 leaves room for 50 concurrent API requests plus the stream consumers and state machine tasks
  they cause. Memory bounds it: should every one get its own warm Python subprocess (~60-100 MB
  with the project's venv), 120 of them is ~12 GB, which the 24 GB development machine holds.
- ``LAMBDA_WARM_TTL_SECONDS``: a surplus warm subprocess left by a burst is reaped after this long
  idle (the first one per function always stays warm), so a burst's memory comes back in a minute.
- ``PLOT_PALETTE_LAMBDA_WORKERS``: warm subprocesses per function before a burst waits for a free
  one instead of cold-starting more (local/shims/lambda_pool.py): 50 cold starts at once on 2
  cores outlast the functions' 29 s timeout, 4 warm workers serve the same 50 requests in seconds.
- ``MINISTACK_WORKER_THREADS``: the emulator's threads for invocations; a waiting invocation holds
  one, so more than the concurrency a burst reaches.
- ``PLOT_PALETTE_SNAPSHOT_SECONDS``: how often the emulator's state is snapshotted to the state dir
  (local/shims/snapshots.py): the most a ``kill -9`` can lose.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from local.shims.lambda_pool import DEFAULT_WORKERS, WORKERS_ENV
from local.shims.snapshots import DEFAULT_SNAPSHOT_SECONDS, SNAPSHOT_SECONDS_ENV

LAMBDA_CONCURRENCY = 120
WARM_TTL_SECONDS = 60

DEFAULTS = {
    "LAMBDA_ACCOUNT_CONCURRENCY": str(LAMBDA_CONCURRENCY),
    "LAMBDA_WARM_TTL_SECONDS": str(WARM_TTL_SECONDS),
    WORKERS_ENV: str(DEFAULT_WORKERS),
    "MINISTACK_WORKER_THREADS": "160",
    SNAPSHOT_SECONDS_ENV: f"{DEFAULT_SNAPSHOT_SECONDS:g}",
}


def emulator_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The defaults above, each overridden by a non-empty variable of the same name."""
    environ = os.environ if environ is None else environ
    return {name: environ.get(name) or default for name, default in DEFAULTS.items()}
