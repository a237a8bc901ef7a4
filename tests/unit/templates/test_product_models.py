"""The fork and dry-run bodies: the served OpenAPI document accepts exactly what the handlers accept.

Found by the fuzz tier (issue 14): the fork accepted bodies its schema refuses (``"2"`` for an
integer, ``1`` for a boolean) and the dry run refused bodies its schema allows (no seed, both seeds,
``record_index`` with an inline seed). Each body here is checked against the committed document
(docs/openapi.json) and against the pydantic model the route validates with: both must agree.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from functions.templates.product_models import DryRunRequest, ForkRequest

DOCUMENT = json.loads((Path(__file__).resolve().parents[3] / "docs" / "openapi.json").read_text())


def _schema_accepts(model: type[BaseModel], body: Any) -> bool:
    root = {"$ref": f"#/components/schemas/{model.__name__}", "components": DOCUMENT["components"]}
    return Draft202012Validator(root).is_valid(body)


def _model_accepts(model: type[BaseModel], body: Any) -> bool:
    try:
        model.model_validate(body)
    except ValidationError:
        return False
    return True


SEED = {"author": {"name": "Ada"}}
PATH = "seed-data/u/authors.jsonl"


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({"seed_record": SEED}, True),
        ({"seed_record": {}, "num_records": 1, "call_model": False, "task_size": "large"}, True),
        ({"seed_data_path": PATH}, True),
        ({"seed_data_path": PATH, "record_index": 3, "version": 2}, True),
        ({"seed_data_path": PATH, "seed_record": None, "record_index": None}, True),
        ({"seed_record": SEED, "seed_data_path": None, "record_index": None}, True),
        ({}, False),
        ({"num_records": 5}, False),
        ({"seed_record": None, "seed_data_path": None}, False),
        ({"seed_record": SEED, "seed_data_path": PATH}, False),
        ({"seed_record": SEED, "record_index": 0}, False),
        ({"seed_data_path": PATH, "record_index": 10_001}, False),
        ({"seed_data_path": PATH, "record_index": -1}, False),
        ({"seed_record": SEED, "num_records": 0}, False),
        ({"seed_record": SEED, "num_records": 1_000_001}, False),
        ({"seed_record": SEED, "num_records": "100"}, False),
        ({"seed_record": SEED, "call_model": 0}, False),
        ({"seed_record": SEED, "version": "2"}, False),
        ({"seed_record": SEED, "extra": 1}, False),
        ({"seed_record": [1]}, False),
    ],
)
def test_the_dry_run_schema_states_what_the_model_enforces(body: dict[str, Any], valid: bool) -> None:
    assert _schema_accepts(DryRunRequest, body) is valid
    assert _model_accepts(DryRunRequest, body) is valid


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({}, True),
        ({"version": 2, "name": "Mine", "description": None, "is_public": True}, True),
        ({"version": "2"}, False),
        ({"version": 2.5}, False),
        ({"version": 0}, False),
        ({"is_public": 1}, False),
        ({"is_public": "true"}, False),
        ({"name": ""}, False),
        ({"name": 5}, False),
        ({"other": 1}, False),
    ],
)
def test_the_fork_schema_states_what_the_model_enforces(body: dict[str, Any], valid: bool) -> None:
    assert _schema_accepts(ForkRequest, body) is valid
    assert _model_accepts(ForkRequest, body) is valid
