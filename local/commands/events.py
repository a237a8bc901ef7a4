"""``plot-palette events [--follow] [--json]``: every event that crossed the bus, newest last.

Reads ``events.jsonl`` (written by local/runtime/capture.py), so it works on a stopped runtime's
state dir too; ``--follow`` keeps printing until Ctrl-C or SIGTERM, across restarts of the runtime.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from local.commands import CliError, running
from local.runtime.capture import EVENTS_FILE
from local.runtime.state import RuntimeNotRunning, running_runtime


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    events = sub.add_parser("events", parents=[common], help="the events that crossed the bus, newest last")
    events.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    events.add_argument("--json", action="store_true", help="one JSON event per line")
    events.set_defaults(handler=run)


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def format_event(event: dict[str, Any]) -> str:
    """One line of ``plot-palette events``: time, source, detail type, and the ids in the detail."""
    if "raw" in event and "detail-type" not in event:
        return f"{'?':<20}  (not an EventBridge event) {_one_line(str(event['raw']))}"
    detail = event.get("detail")
    if not isinstance(detail, dict):
        detail = {}
    ids = " ".join(
        f"{key}={detail[key]}" for key in ("job_id", "template_id", "user_id", "status") if key in detail
    )
    return (
        f"{event.get('time', '?')}  {event.get('source', '?'):<24} {event.get('detail-type', '?'):<28} {ids}"
    ).rstrip()


class EventTail:
    """Reads the events appended to events.jsonl since the last read, complete lines only.

    A half-written last line waits for the next read. A file that shrank or was replaced (the state
    dir was deleted and the runtime started again) is read again from its start.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.position = 0
        self._inode: int | None = None

    def read_new(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as source:
                stat = os.fstat(source.fileno())
                if stat.st_ino != self._inode or stat.st_size < self.position:
                    self._inode, self.position = stat.st_ino, 0
                source.seek(self.position)
                data = source.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self.position += len(complete)
        return [event for event in map(_parse, complete.splitlines()) if event is not None]


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def _follow(show_new: Any) -> None:
    """Print new events until Ctrl-C or SIGTERM (exit 0). The handlers come first, so a signal
    that arrives while the backlog prints ends it the same way."""
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        show_new()
        while not stop.wait(0.5):
            show_new()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run(args: argparse.Namespace) -> int:
    state_dir = args.state_dir.resolve()
    path = state_dir / EVENTS_FILE
    if args.follow:
        running(args)
    elif not path.exists():
        # Without --follow, recorded events are shown even when the runtime is stopped.
        try:
            running_runtime(state_dir)
        except RuntimeNotRunning as error:
            raise CliError(str(error), code=2) from error
        print("(no event has crossed the bus yet)", file=sys.stderr)
        return 0
    tail = EventTail(path)

    def show_new() -> None:
        for event in tail.read_new():
            print(json.dumps(event) if args.json else format_event(event), flush=True)

    if args.follow:
        _follow(show_new)
    else:
        show_new()
    return 0
