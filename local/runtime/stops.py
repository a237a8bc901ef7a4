"""Ctrl-C, SIGTERM and SIGHUP for ``plot-palette local``: a clean stop first, a forced one on demand."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable
from typing import Any


class Interrupted(RuntimeError):
    """A stop was requested (Ctrl-C, SIGTERM, SIGHUP) before the runtime was ready."""


def say(message: str) -> None:
    """Print a progress line; the terminal may be gone (SIGHUP) or stdout closed: carry on regardless."""
    with contextlib.suppress(OSError, ValueError):
        print(message, flush=True)


class StopRequests:
    """The signals that stop ``plot-palette local``.

    The first asks for a clean stop (``requested`` is set): workers end, the emulator saves its state.
    The second says what it is waiting for. The third calls ``force`` (kill everything now; what
    changed since the last snapshot is lost), for when a clean stop hangs.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, say: Callable[[str], None] = say) -> None:
        self.requested = threading.Event()
        self.count = 0
        self.force: Callable[[], None] | None = None
        self._say = say

    def __call__(self, signum: int, _frame: Any = None) -> None:
        self.count += 1
        if self.count == 1:
            self.requested.set()
            self._say("stopping (state is kept) …")
        elif self.count == 2:
            self._say(
                "still stopping: workers end, then the emulator saves its state (up to ~45 s). "
                "Ctrl-C once more kills everything now and loses what changed since the last snapshot."
            )
        else:
            self._say("killing the emulator and the workers now (unsaved state is lost) …")
            if self.force is not None:
                self.force()

    def check(self) -> None:
        """Raise Interrupted if a stop was requested (between the steps of a start)."""
        if self.requested.is_set():
            raise Interrupted("stopped before the runtime was ready")

    def install(self) -> Callable[[], None]:
        """Handle the signals in this (main) thread; returns what restores the previous handlers."""
        previous = {signum: signal.signal(signum, self) for signum in self.SIGNALS}

        def restore() -> None:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

        return restore
