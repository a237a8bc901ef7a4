"""The deployed resources the runtime and its workers talk to, read from the stack outputs.

The local stage names each output after the environment variable it fills, in PascalCase because
CloudFormation output keys are alphanumeric (``JOBS_TABLE`` -> ``JobsTable``,
``WORK_QUEUE_URL`` -> ``WorkQueueUrl``; ``PlotPaletteStack._local_runtime_outputs`` in stacks/).
``environment_from_outputs`` turns them back, one rule, no guessing: a resource the runtime needs
and the stack does not output is an error naming the output to add.
"""

from __future__ import annotations

import re

from stacks.names import output_key

# What the runtime itself cannot do without (the workers validate their own settings at start).
REQUIRED = ("API_ID", "USER_POOL_ID", "USER_POOL_CLIENT_ID", "EVENT_BUS_NAME", "LIFECYCLE_STATE_MACHINE_ARN")

_WORD_START = re.compile(r"(?<!^)(?=[A-Z])")


class MissingOutputs(RuntimeError):
    """The deployed stack lacks outputs the runtime needs; the message names them."""


def environment_name(output_key: str) -> str:
    """``WorkQueueUrl`` -> ``WORK_QUEUE_URL`` (the inverse of stacks' ``output_key``)."""
    return _WORD_START.sub("_", output_key).upper()


def environment_from_outputs(outputs: dict[str, str]) -> dict[str, str]:
    """Every stack output under the environment variable it is named after; raises MissingOutputs."""
    environment = {environment_name(key): value for key, value in outputs.items()}
    missing = [name for name in REQUIRED if not environment.get(name)]
    if missing:
        wanted = ", ".join(f"{output_key(name)} ({name})" for name in missing)
        raise MissingOutputs(
            f"the local stage has no output {wanted}: add it to the local runtime outputs "
            "in stacks/plot_palette_stack.py"
        )
    return environment


def api_base_url(endpoint: str, api_id: str) -> str:
    """The HTTP API's base URL on MiniStack (path form: resolvable without DNS tricks)."""
    return f"{endpoint}/_aws/execute-api/{api_id}"
