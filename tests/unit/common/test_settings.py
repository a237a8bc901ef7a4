"""Settings read from the environment: resource names have no defaults (a missing one fails at cold
start, naming it), values are validated from their strings, JSON-valued variables are parsed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from functions.common.settings import (
    ConcurrencySettings,
    EnvironmentSettings,
    JobsTableSettings,
    load_settings,
)
from functions.promoter.models import PromoterSettings
from functions.worker.settings import ModelRateLimit, WorkerSettings

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


def test_a_keyword_argument_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_TABLE", "from-environment")

    assert JobsTableSettings().jobs_table == "from-environment"
    assert JobsTableSettings(JOBS_TABLE="given").jobs_table == "given"  # type: ignore[call-arg]


def test_values_are_validated_and_converted_from_their_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_RUNNING_JOBS", "7")
    assert ConcurrencySettings().max_running_jobs == 7

    monkeypatch.setenv("MAX_RUNNING_JOBS", "0")
    with pytest.raises(ValidationError, match="MAX_RUNNING_JOBS"):
        ConcurrencySettings()


def test_a_settings_field_must_name_its_variable() -> None:
    with pytest.raises(TypeError, match="without validation_alias"):

        class _Unnamed(EnvironmentSettings):
            orphan: str = "never read from the environment"


def _worker_environment(monkeypatch: pytest.MonkeyPatch, rate_limits: str) -> None:
    monkeypatch.setenv("WORK_QUEUE_URL", "http://queue")
    monkeypatch.setenv("MODEL_RATE_LIMITS", rate_limits)


def test_the_worker_reads_its_model_rate_limits_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    _worker_environment(monkeypatch, '{"anthropic.claude-3-haiku": {"rpm": 60, "tpm": 40000}}')

    limits = WorkerSettings().model_rate_limits

    assert limits == {"anthropic.claude-3-haiku": ModelRateLimit(rpm=60, tpm=40000)}


@pytest.mark.parametrize("rate_limits", ["{not json", '{"m": {"rpm": 0}}', '{"m": {"rps": 1}}'])
def test_bad_model_rate_limits_fail_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, rate_limits: str
) -> None:
    _worker_environment(monkeypatch, rate_limits)

    with pytest.raises(ValidationError, match="MODEL_RATE_LIMITS"):
        WorkerSettings()
