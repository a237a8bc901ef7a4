"""Every curl walkthrough in README.md and docs/local.md runs as printed against the local runtime.

The fenced ``sh``/``bash`` blocks that call the API (``$API``) are read from the documents
themselves, not kept as a copy, so the docs cannot drift from what works. Each block runs in bash
(``set -euo pipefail``) in a scratch directory, with ``plot-palette`` on PATH pointed at the test's
runtime (``PLOT_PALETTE_STATE_DIR``); ``curl`` is wrapped to report the status of every request
it makes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, Runtime

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

DOCS = ("README.md", "docs/local.md")
_FENCE = re.compile(r"^```(?:sh|bash)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_STATUS = re.compile(r"^HTTP (\d{3}) (\w+) (\S+)$", re.MULTILINE)
PRELUDE = """set -euo pipefail
curl() { command curl -w '%{stderr}HTTP %{http_code} %{method} %{url_effective}\\n' "$@"; }
"""
# What the walkthrough shows on purpose: an anonymous request answered 401.
EXPECTED_REFUSALS = {("401", "GET", "/jobs")}


def walkthroughs() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        text = (REPO / doc).read_text()
        for number, block in enumerate(_FENCE.findall(text)):
            if "curl" in block and "$API" in block:
                found.append((f"{doc}#{number}", block))
    return found


def test_the_docs_have_walkthroughs() -> None:
    assert [name.split("#")[0] for name, _ in walkthroughs()] == list(DOCS)


@pytest.mark.parametrize(("name", "script"), walkthroughs(), ids=[name for name, _ in walkthroughs()])
def test_a_walkthrough_runs_as_printed(runtime: Runtime, tmp_path: Path, name: str, script: str) -> None:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PLOT_PALETTE_STATE_DIR": str(runtime.state_dir),
    }
    run = subprocess.run(
        ["bash", "-c", PRELUDE + script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, f"{name} failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
    requests = _STATUS.findall(run.stderr)
    assert requests, run.stderr
    api = runtime.api_url.rstrip("/")
    refused = [
        (code, method, url.removeprefix(api)) for code, method, url in requests if not code.startswith("2")
    ]
    assert set(refused) <= EXPECTED_REFUSALS, (refused, run.stdout[-2000:])
    assert "Internal server error" not in run.stdout
    if name.startswith("docs/local.md"):
        # The job ran to completion and its export is there to download.
        assert '"status":"COMPLETED"' in run.stdout
        assert '"download_url"' in run.stdout
