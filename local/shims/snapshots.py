"""Periodic state snapshots, so a ``kill -9`` of the emulator loses seconds, not everything.

MiniStack 1.5.33 with ``PERSIST_STATE=1`` saves its services' state (``STATE_DIR/<service>.json``)
only at a clean shutdown (the ASGI lifespan's shutdown calls ``persistence.save_all``) and has no
endpoint or setting to save on demand; S3 object bodies (``S3_PERSIST=1``) are written through on
every put already. This shim runs the same save every ``PLOT_PALETTE_SNAPSHOT_SECONDS`` seconds
(default 5; ``0`` turns it off) from a thread inside the emulator process:

- It starts only after MiniStack restored the persisted state (it wraps ``_load_persisted_state``),
  so a snapshot never overwrites saved state with a half-started emulator's empty one.
- Each service's ``get_state()`` (MiniStack's own, deep copies) runs on the emulator's event loop,
  between requests, so one snapshot does not hold half of an API call. Serializing and writing
  happen in the snapshot thread, off the loop.
- Atomic as a set: every file is written to ``<service>.json.snapshot`` first, then all are renamed
  over the old ones (``os.replace``), so a kill at any instant leaves a complete snapshot on disk —
  all services from one snapshot, except for the microseconds of the renames.
- It never runs alongside MiniStack's own save at shutdown (``save_all`` is wrapped to take the
  same lock and end the snapshots), so the final save is the last word.

A service whose state cannot be read at that instant (another emulator thread changing it) keeps its
previous file until the next snapshot. A clean stop still saves through MiniStack's shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from local.shims import ShimNotApplicable, require_version

SNAPSHOT_SECONDS_ENV = "PLOT_PALETTE_SNAPSHOT_SECONDS"
DEFAULT_SNAPSHOT_SECONDS = 5.0

_PENDING = ".snapshot"  # not MiniStack's own ".tmp", which its shutdown save uses

logger = logging.getLogger("plot-palette.shims.snapshots")
# Held while a snapshot or MiniStack's shutdown save runs; ``_stopping`` ends the snapshots.
_saving = threading.Lock()
_stopping = threading.Event()


def snapshot_interval(environ: dict[str, str] | None = None) -> float:
    raw = (environ if environ is not None else os.environ).get(SNAPSHOT_SECONDS_ENV, "").strip()
    if not raw:
        return DEFAULT_SNAPSHOT_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        raise ShimNotApplicable(f"{SNAPSHOT_SECONDS_ENV}={raw!r} is not a number of seconds") from None
    if seconds < 0:
        raise ShimNotApplicable(f"{SNAPSHOT_SECONDS_ENV}={raw!r} is negative")
    return seconds


def collect(save_dict: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Every service's state now (``None``: nothing to save, or unreadable at this instant)."""
    states: dict[str, Any] = {}
    for name, get_state in save_dict.items():
        try:
            states[name] = get_state()
        except Exception as error:  # a dict changed by another thread mid-copy: next time
            logger.warning("snapshot: state of %s unreadable now (%s); kept the previous one", name, error)
    return {name: state for name, state in states.items() if state is not None}


def write_snapshot(state_dir: str, states: dict[str, Any]) -> list[str]:
    """Write every state to ``<service>.json.snapshot``, then rename them all into place."""
    from ministack.core import persistence

    os.makedirs(state_dir, exist_ok=True)
    paths = {name: os.path.join(state_dir, f"{name}.json") for name in states}
    try:
        for name, state in states.items():
            wrapped = {"__ministack_format__": persistence._state_format_version(name), "payload": state}
            with open(paths[name] + _PENDING, "w") as sink:
                json.dump(wrapped, sink, default=persistence._json_default)
    except BaseException:
        for path in paths.values():
            _remove(path + _PENDING)
        raise
    for path in paths.values():
        os.replace(path + _PENDING, path)
    return list(paths)


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


class Snapshotter(threading.Thread):
    """Saves the emulator's state every ``interval`` seconds, reading it on ``loop``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        save_dict: Callable[[], dict[str, Callable[[], Any]]],
        state_dir: str,
        interval: float,
    ) -> None:
        super().__init__(name="plot-palette-snapshots", daemon=True)
        self.loop, self.save_dict, self.state_dir, self.interval = loop, save_dict, state_dir, interval

    def run(self) -> None:
        while not _stopping.wait(self.interval) and not self.loop.is_closed():
            with _saving:
                if _stopping.is_set():
                    return
                try:
                    self.snapshot()
                except Exception:
                    logger.exception("snapshot failed; the previous one stands")

    def snapshot(self) -> None:
        async def read() -> dict[str, Any]:
            return collect(self.save_dict())

        started = time.monotonic()
        states = asyncio.run_coroutine_threadsafe(read(), self.loop).result(timeout=60)
        read_at = time.monotonic()
        names = write_snapshot(self.state_dir, states)
        took = time.monotonic() - started
        # The emulator's log is at WARNING: a snapshot that takes a good part of the window shows.
        log = logger.warning if took > self.interval / 2 else logger.info
        log(
            "snapshot of %d services: %.0f ms reading (on the event loop), %.0f ms writing",
            len(names),
            (read_at - started) * 1000,
            (time.monotonic() - read_at) * 1000,
        )


def install() -> None:
    require_version("snapshots")
    from ministack import app
    from ministack.core import persistence

    if not persistence.PERSIST_STATE:
        raise ShimNotApplicable("PERSIST_STATE is off: nothing to snapshot")
    interval = snapshot_interval()
    if interval == 0:
        raise ShimNotApplicable(f"{SNAPSHOT_SECONDS_ENV}=0 turns snapshots off")
    for name in ("_load_persisted_state", "_build_persistence_save_dict", "save_all"):
        if not hasattr(app, name):
            raise ShimNotApplicable(f"MiniStack's app has no {name}")
    restore = app._load_persisted_state

    def load_persisted_state_then_snapshot() -> None:
        restore()  # called from the lifespan startup, on the event loop
        Snapshotter(
            asyncio.get_running_loop(), app._build_persistence_save_dict, persistence.STATE_DIR, interval
        ).start()

    app._load_persisted_state = load_persisted_state_then_snapshot
    save_all = app.save_all

    def last_save(services: Any) -> None:  # MiniStack's shutdown: after any snapshot, then no more
        with _saving:
            _stopping.set()
            save_all(services)

    app.save_all = last_save
