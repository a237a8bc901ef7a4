"""The prompt sandbox's default limits (``functions.common.sandbox``), in a module without Jinja2.

Settings models read them at import (the templates API's ``DryRunSettings``), where importing the
sandbox, and Jinja2 with it, would be paid by every cold start of the API (``benchmarks/cold_start.py``).
"""

from __future__ import annotations

DEFAULT_MAX_OUTPUT_CHARS = 200_000
DEFAULT_MAX_SECONDS = 2.0
