"""runtime.json: what ``plot-palette local`` records, and how the other subcommands judge it.

Covers the paths a user meets when nothing runs: no state dir, a wrong one, an unreadable
runtime.json, a runtime that stopped cleanly, one that died (kill -9) and what it left running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.cli import main
from local.emulator import free_port
from local.runtime.state import (
    RUNTIME_FILE,
    RuntimeInfo,
    RuntimeNotRunning,
    leftover_processes,
    running_runtime,
)
from tests.unit.local.conftest import HealthEndpoint, append_events, bus_events, dead_pid, runtime_info

pytestmark = pytest.mark.unit

COMMANDS = [
    ["url"],
    ["token", "demo"],
    ["executions", "7d0c3a57-8f0e-4a55-9b0a-2f1e4c7d9a11"],
    ["events", "--follow"],
]


def test_runtime_json_round_trips_every_field(tmp_path: Path) -> None:
    info = runtime_info(
        tmp_path,
        port=4600,
        pid=123,
        outputs={"ApiUrl": "https://abc123.execute-api.localhost"},
        environment={"JOBS_TABLE": "plot-palette-local-Jobs"},
        swagger_url="http://127.0.0.1:4600/_aws/execute-api/abc123/docs",
        started_at=1_764_345_600.5,
        emulator_pid=124,
        worker_pids=[125, 126],
        ready_at=1_764_345_630.25,
    )
    info.save()
    saved = json.loads((tmp_path / RUNTIME_FILE).read_text())
    assert saved["endpoint"] == "http://127.0.0.1:4600"
    assert saved["stopped_at"] is None
    assert RuntimeInfo.load(tmp_path) == info
    assert not (tmp_path / "runtime.tmp").exists()


def test_a_runtime_json_written_before_the_pid_fields_still_loads(tmp_path: Path) -> None:
    older = runtime_info(tmp_path, port=4600, pid=123).to_json()
    for key in ("emulator_pid", "worker_pids", "ready_at", "stopped_at"):
        del older[key]
    (tmp_path / RUNTIME_FILE).write_text(json.dumps(older))
    loaded = RuntimeInfo.load(tmp_path)
    assert (loaded.emulator_pid, loaded.worker_pids, loaded.ready_at, loaded.stopped_at) == (
        None,
        [],
        None,
        None,
    )


@pytest.mark.parametrize("text", ["", "{", "[]", '{"port": 4600}', '{"port": "x", "pid": 1}'])
def test_an_unreadable_runtime_json_says_so_instead_of_a_traceback(tmp_path: Path, text: str) -> None:
    (tmp_path / RUNTIME_FILE).write_text(text)
    with pytest.raises(RuntimeNotRunning, match=r"runtime\.json is unreadable .* rewritten at the next"):
        RuntimeInfo.load(tmp_path)


def test_no_runtime_json_names_the_state_dir_and_the_default(tmp_path: Path) -> None:
    with pytest.raises(RuntimeNotRunning) as raised:
        RuntimeInfo.load(tmp_path / "nowhere")
    message = str(raised.value)
    assert f"no plot-palette runtime has been started with state dir {tmp_path / 'nowhere'}" in message
    assert "the default state dir is .plot-palette in the current directory" in message
    assert f"run `plot-palette local --state-dir {tmp_path / 'nowhere'}`" in message


def test_a_cleanly_stopped_runtime_is_not_running_without_asking_the_network(tmp_path: Path) -> None:
    # pid and port would pass the other checks: only stopped_at decides.
    runtime_info(tmp_path, port=free_port(), pid=os.getpid(), stopped_at=1_764_345_600.0).save()
    with pytest.raises(RuntimeNotRunning, match="was stopped at 20"):
        running_runtime(tmp_path)


def test_a_runtime_whose_process_died_is_reported_as_such(tmp_path: Path) -> None:
    runtime_info(tmp_path, port=4600, pid=dead_pid()).save()
    with pytest.raises(RuntimeNotRunning, match=r"ended without a clean stop; it was on port 4600"):
        running_runtime(tmp_path)


def test_a_live_process_without_an_emulator_points_at_the_emulator_log(tmp_path: Path) -> None:
    port = free_port()
    runtime_info(tmp_path, port=port, pid=os.getpid()).save()
    with pytest.raises(RuntimeNotRunning) as raised:
        running_runtime(tmp_path)
    assert f"has no emulator answering on port {port}" in str(raised.value)
    assert str(tmp_path / "logs" / "emulator.log") in str(raised.value)


def test_a_live_process_with_a_healthy_emulator_is_running(running_state_dir: Path) -> None:
    assert running_runtime(running_state_dir).pid == os.getpid()


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: argv[0])
def test_every_subcommand_exits_2_with_the_reason_when_nothing_runs(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--state-dir", str(tmp_path / "typo")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("plot-palette: no plot-palette runtime has been started with state dir")
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: argv[0])
def test_every_subcommand_exits_2_after_a_crash(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runtime_info(tmp_path, port=4600, pid=dead_pid()).save()
    assert main([*argv, "--state-dir", str(tmp_path)]) == 2
    assert "ended without a clean stop" in capsys.readouterr().err


def test_url_prints_the_base_url_of_a_running_runtime(
    running_state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["url", "--state-dir", str(running_state_dir)]) == 0
    assert capsys.readouterr().out == RuntimeInfo.load(running_state_dir).api_url + "\n"


def test_recorded_events_are_shown_after_the_runtime_stopped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runtime_info(tmp_path, port=4600, pid=dead_pid(), stopped_at=1_764_345_600.0).save()
    append_events(tmp_path / "events.jsonl", bus_events())
    assert main(["events", "--state-dir", str(tmp_path)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(bus_events())


def test_no_events_yet_is_said_on_stderr_and_succeeds(
    running_state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["events", "--json", "--state-dir", str(running_state_dir)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no event has crossed the bus yet" in captured.err


# --------------------------------------------------------------------------- leftovers of a crash


@pytest.fixture
def fake_worker() -> Iterator[subprocess.Popen[bytes]]:
    """A process whose command line reads like a generation worker's (``-m functions.worker``)."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "-m", "functions.worker"]
    )
    yield process
    process.kill()
    process.wait()


def test_a_dead_runtime_s_emulator_and_workers_are_found(
    tmp_path: Path, health_endpoint: HealthEndpoint, fake_worker: subprocess.Popen[bytes]
) -> None:
    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        info = runtime_info(
            tmp_path,
            port=health_endpoint.port,
            pid=dead_pid(),
            emulator_pid=health_endpoint.process.pid,
            worker_pids=[fake_worker.pid, unrelated.pid, dead_pid()],
        )
        # An alive pid that is not a worker (a reused pid) is never named: the user would kill it.
        assert leftover_processes(info) == [
            ("emulator", health_endpoint.process.pid),
            ("worker", fake_worker.pid),
        ]
    finally:
        unrelated.kill()
        unrelated.wait()


def test_nothing_is_left_over_after_a_clean_stop_or_while_the_runtime_lives(
    tmp_path: Path, health_endpoint: HealthEndpoint, fake_worker: subprocess.Popen[bytes]
) -> None:
    common = {
        "port": health_endpoint.port,
        "emulator_pid": health_endpoint.process.pid,
        "worker_pids": [fake_worker.pid],
    }
    assert leftover_processes(runtime_info(tmp_path, pid=dead_pid(), stopped_at=1.0, **common)) == []
    assert leftover_processes(runtime_info(tmp_path, pid=os.getpid(), **common)) == []


def test_an_emulator_pid_whose_port_no_longer_answers_is_not_named(
    tmp_path: Path, health_endpoint: HealthEndpoint
) -> None:
    info = runtime_info(tmp_path, port=free_port(), pid=dead_pid(), emulator_pid=health_endpoint.process.pid)
    assert leftover_processes(info) == []


def test_local_refuses_to_start_over_the_leftovers_and_says_what_to_kill(
    tmp_path: Path,
    health_endpoint: HealthEndpoint,
    fake_worker: subprocess.Popen[bytes],
    capsys: pytest.CaptureFixture[str],
) -> None:
    emulator = health_endpoint.process.pid
    runtime_info(
        tmp_path,
        port=health_endpoint.port,
        pid=dead_pid(),
        emulator_pid=emulator,
        worker_pids=[fake_worker.pid],
    ).save()
    assert main(["local", "--state-dir", str(tmp_path), "--port", str(free_port())]) == 1
    err = capsys.readouterr().err
    assert f"still running: emulator {emulator}, worker {fake_worker.pid}" in err
    assert f"`kill {emulator} {fake_worker.pid}`" in err


def test_local_refuses_a_second_runtime_on_the_same_state_dir(
    running_state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["local", "--state-dir", str(running_state_dir), "--port", str(free_port())]) == 1
    assert f"a runtime already runs with state dir {running_state_dir}" in capsys.readouterr().err
