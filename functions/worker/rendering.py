"""Rendering step prompts in the hardened sandbox (``functions.common.sandbox``), compiled once each.

Undefined names are errors (``StrictUndefined``): a prompt that reads a field the seed record lacks
fails that record with a message naming the field instead of sending a silently shortened prompt.
Templates use ``is defined`` or ``| default(...)`` for optional fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import Template, TemplateError

from functions.common.sandbox import (
    DEFAULT_MAX_OUTPUT_CHARS,
    DEFAULT_MAX_SECONDS,
    Deadline,
    LimitedSandbox,
    RenderError,
    render_limited,
)

__all__ = ["DEFAULT_MAX_OUTPUT_CHARS", "DEFAULT_MAX_SECONDS", "PromptRenderer", "RenderError", "RenderLimits"]


@dataclass(frozen=True)
class RenderLimits:
    max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS
    max_seconds: float = DEFAULT_MAX_SECONDS


class PromptRenderer:
    """Compiles each distinct prompt once and renders it under the limits."""

    def __init__(self, limits: RenderLimits | None = None) -> None:
        self.limits = limits or RenderLimits()
        self._env = LimitedSandbox(self.limits.max_output_chars)
        self._compiled: dict[str, Template] = {}

    def compile(self, source: str) -> Template:
        template = self._compiled.get(source)
        if template is None:
            try:
                template = self._env.from_string(source)
            except TemplateError as error:
                raise RenderError(f"the prompt is not a valid template: {error}") from error
            self._compiled[source] = template
        return template

    def render(self, source: str, context: Mapping[str, Any]) -> str:
        template = self.compile(source)
        deadline = Deadline(self.limits.max_seconds)
        return render_limited(template, context, self.limits.max_output_chars, deadline)
