"""Ctrl-C (and SIGTERM, SIGHUP) during ``plot-palette local``: stop cleanly, explain, then force."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from local.runtime.stops import Interrupted, StopRequests
from local.runtime.synth import synth_local_stage

pytestmark = pytest.mark.unit


def test_the_first_request_stops_the_second_explains_the_third_forces() -> None:
    said: list[str] = []
    forced: list[bool] = []
    stops = StopRequests(say=said.append)
    stops.force = lambda: forced.append(True)
    stops.check()  # nothing requested: goes on

    stops(signal.SIGINT)
    assert stops.requested.is_set()
    assert said == ["stopping (state is kept) …"]
    with pytest.raises(Interrupted, match="stopped before the runtime was ready"):
        stops.check()

    stops(signal.SIGINT)
    assert "still stopping: workers end, then the emulator saves its state" in said[-1]
    assert "Ctrl-C once more kills everything now" in said[-1]
    assert forced == []

    stops(signal.SIGINT)
    assert said[-1].startswith("killing the emulator and the workers now")
    assert forced == [True]
    stops(signal.SIGINT)
    assert forced == [True, True]


def test_a_third_request_before_anything_started_has_nothing_to_kill() -> None:
    said: list[str] = []
    stops = StopRequests(say=said.append)
    for _ in range(3):
        stops(signal.SIGTERM)
    assert len(said) == 3


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_the_signals_a_terminal_sends_request_a_stop_and_the_old_handlers_come_back(signum: int) -> None:
    """SIGHUP too: closing the terminal must not leave the emulator and workers (own sessions) behind."""
    assert threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signum)
    stops = StopRequests(say=lambda _: None)
    restore = stops.install()
    try:
        os.kill(os.getpid(), signum)
        assert stops.requested.wait(5)
    finally:
        restore()
    assert signal.getsignal(signum) == before


def test_a_stop_during_synth_ends_the_synth_process_and_says_so(tmp_path: Path) -> None:
    said: list[str] = []
    stop = threading.Event()
    stop.set()  # Ctrl-C arrived as the synth started
    with pytest.raises(Interrupted, match="stopped while synthesizing"):
        synth_local_stage(tmp_path / "cdk.out", tmp_path / "synth.log", said.append, stop=stop, timeout=60)
    assert said[0].startswith("synthesizing the CDK app's local stage")
    assert not (tmp_path / "cdk.out" / "manifest.json").exists()
