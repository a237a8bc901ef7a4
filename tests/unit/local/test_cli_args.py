"""Argument parsing of ``plot-palette``: -c KEY=VALUE context values, --port, --workers, exit codes."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from local.cli import build_parser, main
from local.commands.local import parse_context_item
from local.emulator import HOST, free_port
from tests.unit.local.conftest import REPO

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("max_running_jobs=3", ("max_running_jobs", 3)),
        ("heartbeat_seconds=-1", ("heartbeat_seconds", -1)),
        ("batch_size=+10", ("batch_size", 10)),
        ("batch_size=007", ("batch_size", 7)),  # json.loads("007") used to raise a traceback
        ("prefix=dev-1", ("prefix", "dev-1")),
        (
            "allowed_origins=https://a.example,https://b.example",
            ("allowed_origins", "https://a.example,https://b.example"),
        ),
        ("ratio=1.5", ("ratio", "1.5")),
        ("user_pool_client_id=1h2j3k", ("user_pool_client_id", "1h2j3k")),
        ("note=a=b", ("note", "a=b")),  # only the first '=' separates
        ("digits=²", ("digits", "²")),  # a unicode digit is not a number
        ("dashes=--5", ("dashes", "--5")),
        (" max_running_jobs=3", ("max_running_jobs", 3)),
    ],
)
def test_context_values_are_ints_when_whole_numbers_else_strings(
    item: str, expected: tuple[str, object]
) -> None:
    assert parse_context_item(item) == expected


def test_repeated_context_values_arrive_in_order_and_the_last_one_wins() -> None:
    args = build_parser().parse_args(
        ["local", "-c", "max_running_jobs=3", "--context", "prefix=x", "-c", "max_running_jobs=4"]
    )
    assert args.context == [("max_running_jobs", 3), ("prefix", "x"), ("max_running_jobs", 4)]
    assert dict(args.context) == {"max_running_jobs": 4, "prefix": "x"}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("max_running_jobs", "expected KEY=VALUE (e.g. max_running_jobs=3), got 'max_running_jobs'"),
        ("max_running_jobs:3", "expected KEY=VALUE"),
        ("=3", "'=3' has no valid KEY before '='"),
        ("max running=3", "'max running=3' has no valid KEY before '='"),
        (
            "max_running_jobs=",
            "max_running_jobs has an empty value; to keep the default, leave out -c max_running_jobs",
        ),
        ("stage=prod", "stage cannot be set: the local runtime always synthesizes the local stage"),
        ("aws:cdk:bundling-stacks=*", "aws:cdk:bundling-stacks cannot be set"),
    ],
)
def test_a_bad_context_value_is_a_usage_error_with_exit_code_2(
    item: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["local", "-c", item])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "plot-palette local: error: argument --context/-c: " + message in err
    assert "usage: plot-palette local" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["local", "--port", "70000"], "argument --port: port 70000 is outside 1-65535"),
        (["local", "--port", "0"], "argument --port: port 0 is outside 1-65535"),
        (["local", "--port", "http"], "argument --port: not a port number: 'http'"),
        (["local", "--workers", "-1"], "argument --workers: --workers takes 0 or more, got -1"),
        (["local", "--workers", "two"], "argument --workers: not a number of workers: 'two'"),
        (["executions"], "the following arguments are required: job_id"),
        (["token"], "the following arguments are required: user"),
        ([], "the following arguments are required: command"),
        (["serve"], "invalid choice: 'serve'"),
    ],
)
def test_bad_arguments_exit_2_with_the_reason(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_a_bad_port_in_the_environment_is_a_usage_error_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PLOT_PALETTE_PORT", "45x")
    with pytest.raises(SystemExit) as exited:
        main(["local"])
    assert exited.value.code == 2
    assert "argument --port: not a port number: '45x'" in capsys.readouterr().err


def test_environment_defaults_apply_and_flags_override_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLOT_PALETTE_PORT", "4600")
    monkeypatch.setenv("PLOT_PALETTE_WORKERS", "0")
    monkeypatch.setenv("PLOT_PALETTE_STATE_DIR", "/tmp/pp-state")
    args = build_parser().parse_args(["local"])
    assert (args.port, args.workers, args.state_dir) == (4600, 0, Path("/tmp/pp-state"))
    args = build_parser().parse_args(["local", "--port", "4700", "--workers", "3", "--state-dir", "x"])
    assert (args.port, args.workers, args.state_dir) == (4700, 3, Path("x"))


def test_an_empty_environment_value_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLOT_PALETTE_PORT", "")
    monkeypatch.setenv("PLOT_PALETTE_STATE_DIR", "")
    args = build_parser().parse_args(["local"])
    assert (args.port, args.state_dir) == (4566, Path(".plot-palette"))


def test_the_console_entry_point_reports_a_bad_context_without_a_traceback() -> None:
    answer = subprocess.run(
        [sys.executable, "-m", "local.cli", "local", "-c", "max_running_jobs"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert answer.returncode == 2
    assert "expected KEY=VALUE" in answer.stderr
    assert "Traceback" not in answer.stderr


def test_context_with_a_prebuilt_assembly_is_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["local", "--state-dir", str(tmp_path / "state"), "--port", str(free_port())]
    assert main([*argv, "--assembly", str(tmp_path), "-c", "max_running_jobs=3"]) == 2
    assert "-c/--context has no effect with --assembly" in capsys.readouterr().err
    assert not (tmp_path / "state" / "emulator").exists()


def test_a_state_dir_that_is_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_a_dir = tmp_path / "state"
    not_a_dir.write_text("")
    assert main(["local", "--state-dir", str(not_a_dir), "--port", str(free_port())]) == 1
    assert f"cannot use {not_a_dir} as the state dir" in capsys.readouterr().err


def test_a_port_in_use_is_refused_with_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["local", "--state-dir", str(tmp_path), "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"port {port} on {HOST} is in use: pick another with `--port N`" in err


def test_an_unknown_job_id_form_is_refused_before_looking_for_a_runtime(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["executions", "job 42", "--state-dir", str(tmp_path)]) == 2
    assert "'job 42' is not a job id (a job id is a UUID" in capsys.readouterr().err


def test_worker_context_values_go_to_the_workers_environment_not_to_cdk():
    from functions.worker.settings import WorkerSettings
    from local.commands.local import split_worker_context
    from local.runtime.state import RuntimeInfo
    from local.runtime.workers import worker_environment

    parser = build_parser()
    args = parser.parse_args(
        ["local", "-c", "offline_latency_ms=200", "-c", "offline_rpm=600", "-c", "max_running_jobs=3"]
    )
    context, worker_env = split_worker_context(dict(args.context))

    assert context == {"max_running_jobs": 3}
    assert worker_env == {"OFFLINE_LATENCY_MS": "200", "OFFLINE_RPM": "600"}
    info = RuntimeInfo(
        state_dir=Path("/nonexistent"),
        port=4566,
        pid=1,
        api_url="http://api",
        api_id="api",
        user_pool_id="pool",
        user_pool_client_id="client",
        environment={"WORK_QUEUE_URL": "http://q"},
    )
    settings = WorkerSettings.model_validate(worker_environment(info, worker_env))
    assert (settings.offline_latency_ms, settings.offline_rpm) == (200, 600)
