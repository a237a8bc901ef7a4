"""Settings without defaults for resource names: a missing one fails at cold start, naming it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from functions.common.settings import load_settings
from functions.promoter.models import PromoterSettings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("variable", ["JOBS_TABLE", "QUEUE_TABLE", "LIFECYCLE_STATE_MACHINE_ARN"])
def test_a_missing_resource_name_fails_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv("LIFECYCLE_STATE_MACHINE_ARN", "arn:aws:states:us-east-1:1:stateMachine:x")
    monkeypatch.delenv(variable)
    load_settings.cache_clear()

    with pytest.raises(ValidationError, match=variable):
        load_settings(PromoterSettings)


def test_settings_read_every_name_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFECYCLE_STATE_MACHINE_ARN", "arn:aws:states:us-east-1:1:stateMachine:x")
    monkeypatch.setenv("QUEUE_TABLE", "other-Queue")
    load_settings.cache_clear()

    settings = load_settings(PromoterSettings)

    assert (settings.jobs_table, settings.queue_table) == ("plot-palette-Jobs", "other-Queue")
    load_settings.cache_clear()
