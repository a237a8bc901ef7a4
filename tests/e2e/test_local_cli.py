"""The CLI around a running runtime: ``events --follow`` as things happen, a second ``local`` refused.

Uses the session runtime of conftest.py (no second runtime is started).
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading

import pytest

from local.emulator import free_port
from tests.e2e.conftest import REPO, Runtime, create_template

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]


def test_events_follow_shows_an_event_as_it_crosses_the_bus(runtime: Runtime) -> None:
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "local.cli",
            "events",
            "--follow",
            "--json",
            "--state-dir",
            str(runtime.state_dir),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert follower.stdout is not None
        for line in follower.stdout:
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        template_id = create_template(runtime.client("follow-fiona"))
        seen: list[str] = []
        while True:
            try:
                event = json.loads(lines.get(timeout=30))
            except queue.Empty:
                pytest.fail(f"no Template Created for {template_id} within 30 s; saw {seen}")
            seen.append(event.get("detail-type", "?"))
            if (
                event.get("detail-type") == "Template Created"
                and event["detail"]["template_id"] == template_id
            ):
                break
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=10) == 0
        assert follower.stderr is not None
        assert follower.stderr.read() == ""
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait(timeout=10)


def test_a_second_local_on_the_same_state_dir_is_refused_before_it_starts_anything(runtime: Runtime) -> None:
    answer = runtime.cli("local", "--port", str(free_port()), timeout=60)
    assert answer.returncode == 1
    assert f"a runtime already runs with state dir {runtime.state_dir.resolve()}" in answer.stderr
    assert runtime.cli("url").stdout.strip() == runtime.api_url
