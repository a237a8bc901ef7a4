"""A seed record the JSON parser cannot take (a 5,000-digit number, a 100k-deep object) ends the job
FAILED with SeedDataError naming the line, not an unexpected WorkerError."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from functions.worker.models import Outcome
from functions.worker.service import SEED_DATA_ERROR
from tests.integration.worker.conftest import BUCKET, USER, World, start

pytestmark = pytest.mark.integration

GOOD = b'{"author": {"name": "Ada Lovelace", "field": "mathematics"}}\n'


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (b'{"author": {"name": "Eve", "field": "x"}, "n": ' + b"7" * 5000 + b"}", "more than 100 digits"),
        (b'{"a": ' * 100_000 + b"1" + b"}" * 100_000, "deeper than 64 levels"),
    ],
    ids=["5000-digit-number", "100k-deep-object"],
)
def test_a_malformed_seed_record_fails_the_job_as_seed_data_error_with_its_line(
    world: World, make_service: Any, bad: bytes, reason: str
) -> None:
    key = f"seed-data/{USER}/{uuid.uuid4().hex}-bad.jsonl"
    world.s3.put_object(Bucket=BUCKET, Key=key, Body=GOOD + bad + b"\n")
    item = world.make_job(num_records=4, batch_size=4, seed_data_path=key)

    result = make_service().run(item, start(world, item))

    assert result.outcome is Outcome.FAILED
    assert result.error == SEED_DATA_ERROR
    assert "line 2" in (result.cause or "")
    assert reason in (result.cause or "")
