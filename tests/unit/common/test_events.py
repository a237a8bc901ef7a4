import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from functions.common.events import ALL_EVENTS, JobQueued, detail_json_schema

DOCS = Path(__file__).resolve().parents[3] / "docs" / "events"


def test_every_detail_type_is_title_case_with_a_known_source() -> None:
    for model in ALL_EVENTS:
        assert model.detail_type.istitle(), model.detail_type
        assert model.source in {"plot-palette.jobs", "plot-palette.templates", "plot-palette.seed-data"}
    assert len({m.detail_type for m in ALL_EVENTS}) == len(ALL_EVENTS)


@pytest.mark.parametrize("model", ALL_EVENTS, ids=lambda m: m.__name__)
def test_committed_schema_matches_the_model(model) -> None:
    committed = json.loads((DOCS / f"{model.__name__}.json").read_text())
    assert committed == detail_json_schema(model), "run `make schemas` and commit docs/events/"


def test_details_reject_unknown_fields_so_nothing_leaks_by_accident() -> None:
    with pytest.raises(ValidationError):
        JobQueued(
            job_id="j",
            user_id="u",
            template_id="t",
            template_version=1,
            priority=5,
            num_records=1,
            created_at="2026-11-28T00:00:00.000Z",
            seed_record={"secret": 1},
        )
