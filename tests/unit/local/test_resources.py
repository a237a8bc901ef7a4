"""Resources from stack outputs named after environment variables; the emulator settings."""

from __future__ import annotations

import pytest

from local.runtime.resources import REQUIRED, MissingOutputs, environment_from_outputs, environment_name
from local.runtime.settings import emulator_settings
from stacks.names import output_key

pytestmark = pytest.mark.unit

VARIABLES = [*REQUIRED, "JOBS_TABLE", "WORK_QUEUE_URL", "COST_TRACKING_TABLE", "IDEMPOTENCY_TABLE"]


@pytest.mark.parametrize("variable", VARIABLES)
def test_an_output_key_turns_back_into_its_variable(variable: str) -> None:
    assert environment_name(output_key(variable)) == variable


def test_outputs_become_the_environment_they_are_named_after() -> None:
    outputs = {output_key(name): f"value of {name}" for name in VARIABLES}
    environment = environment_from_outputs(outputs)
    assert {name: environment[name] for name in VARIABLES} == {name: f"value of {name}" for name in VARIABLES}
    assert output_key("WORK_QUEUE_URL") == "WorkQueueUrl"


def test_a_missing_output_is_named_with_where_to_add_it() -> None:
    outputs = {output_key(name): "x" for name in REQUIRED if name != "API_ID"}
    with pytest.raises(MissingOutputs, match=r"no output ApiId \(API_ID\).*stacks/plot_palette_stack.py"):
        environment_from_outputs(outputs)


def test_emulator_settings_default_and_each_can_be_overridden() -> None:
    defaults = emulator_settings({})
    assert defaults["LAMBDA_ACCOUNT_CONCURRENCY"] == "120"
    assert defaults["PLOT_PALETTE_SNAPSHOT_SECONDS"] == "5"
    assert defaults["PLOT_PALETTE_LAMBDA_WORKERS"] == "4"
    changed = emulator_settings({"LAMBDA_ACCOUNT_CONCURRENCY": "200", "PLOT_PALETTE_SNAPSHOT_SECONDS": ""})
    assert changed["LAMBDA_ACCOUNT_CONCURRENCY"] == "200"
    assert changed["PLOT_PALETTE_SNAPSHOT_SECONDS"] == "5"  # empty means the default
