"""``plot-palette events --follow`` as a user runs it: a subprocess tailing a growing events.jsonl.

The state dir's runtime.json names this test process and a health endpoint (see conftest), so the
command sees a running runtime; the test appends events the way the runtime's drain does. Every
wait is bounded.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.commands.events import format_event
from tests.unit.local.conftest import REPO, append_events, bus_events

pytestmark = pytest.mark.unit

WAIT = 10.0  # generous for 2 shared cores; the command polls every 0.5 s


class Follower:
    """``python -m local.cli events --follow`` with its stdout read line by line in a thread."""

    def __init__(self, state_dir: Path, *extra: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "local.cli", "events", "--follow", *extra, "--state-dir", str(state_dir)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def next_lines(self, count: int) -> list[str]:
        deadline = time.monotonic() + WAIT
        got: list[str] = []
        while len(got) < count:
            try:
                got.append(self.lines.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                pytest.fail(f"expected {count} line(s) within {WAIT:.0f} s, got {got!r}")
        return got

    def nothing_more_for(self, seconds: float) -> None:
        try:
            extra = self.lines.get(timeout=seconds)
        except queue.Empty:
            return
        pytest.fail(f"unexpected line {extra!r}")

    def stop(self, signum: int) -> tuple[int, str]:
        self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"events --follow did not exit within {WAIT:.0f} s of {signal.Signals(signum).name}")
        self._reader.join(timeout=WAIT)
        assert self.process.stderr is not None
        return code, self.process.stderr.read()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=WAIT)


@pytest.fixture
def follow(running_state_dir: Path) -> Iterator[list[Follower]]:
    started: list[Follower] = []
    yield started
    for follower in started:
        follower.kill()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_follow_prints_the_backlog_then_each_new_event_and_exits_cleanly(
    running_state_dir: Path, follow: list[Follower], signum: int
) -> None:
    events = bus_events()
    path = running_state_dir / "events.jsonl"
    append_events(path, events[:2])
    follower = Follower(running_state_dir)
    follow.append(follower)

    assert follower.next_lines(2) == [format_event(e) for e in events[:2]]
    append_events(path, events[2:3])
    assert follower.next_lines(1) == [format_event(events[2])]

    line = json.dumps(events[3], separators=(",", ":")) + "\n"
    with open(path, "a") as sink:  # the drain is mid-write: nothing shows until the line is complete
        sink.write(line[:30])
    follower.nothing_more_for(1.2)
    with open(path, "a") as sink:
        sink.write(line[30:])
    append_events(path, events[4:])
    assert follower.next_lines(2) == [format_event(e) for e in events[3:]]

    code, stderr = follower.stop(signum)
    assert code == 0
    assert stderr == ""


def test_follow_waits_for_the_first_event_and_prints_json_with_json(
    running_state_dir: Path, follow: list[Follower]
) -> None:
    follower = Follower(running_state_dir, "--json")
    follow.append(follower)
    follower.nothing_more_for(1.0)  # no events.jsonl yet: it waits instead of failing
    append_events(running_state_dir / "events.jsonl", bus_events()[:3])
    assert [json.loads(line) for line in follower.next_lines(3)] == bus_events()[:3]
    code, stderr = follower.stop(signal.SIGINT)
    assert (code, stderr) == (0, "")


def test_events_piped_into_head_ends_without_a_traceback(tmp_path: Path) -> None:
    event = bus_events()[1]
    append_events(tmp_path / "events.jsonl", [event] * 3000)  # far more than a pipe buffer holds
    process = subprocess.Popen(
        [sys.executable, "-m", "local.cli", "events", "--state-dir", str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    assert process.stdout.readline().rstrip("\n") == format_event(event)
    process.stdout.close()  # what `| head -1` does after its line
    code = process.wait(timeout=WAIT)
    assert code == 128 + signal.SIGPIPE
    assert "Traceback" not in process.stderr.read()
