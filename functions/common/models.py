"""The base of the API's pydantic models: validators and serializers built on first use.

Building a model's core schema costs about a millisecond at class creation; an API Lambda imports
dozens of models (its requests, answers, stored rows and event details) but one request uses a few.
With ``defer_build`` a cold start pays only for the models its request touches
(``benchmarks/cold_start.py``); behaviour, validation and JSON Schema are the same.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class DeferredModel(BaseModel):
    """``BaseModel`` with ``defer_build``; subclasses' own ``model_config`` keeps it (configs merge)."""

    model_config = ConfigDict(defer_build=True)
