"""Rendering step prompts in the hardened sandbox (``functions.common.sandbox``), compiled once each.

Undefined names are errors (``StrictUndefined``): a prompt that reads a field the seed record lacks
fails that record with a message naming the field instead of sending a silently shortened prompt.
Templates use ``is defined`` or ``| default(...)`` for optional fields.

Compiling: a ``PromptRenderer`` lives as long as its process (a worker runs job after job, the API's
dry run serves many users), so it keeps the last ``cache_size`` distinct prompts it compiled, by
their text: an edited template is new text, so it is compiled anew, and the least recently used
prompts are dropped, so memory stays bounded. A compiled template holds no state between renders
(each render gets a context of its own), so two jobs with the same prompt text share it safely.
The worker compiles each step once per job and renders the compiled template for every record.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
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

COMPILED_CACHE_SIZE = 256


@dataclass(frozen=True)
class RenderLimits:
    max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS
    max_seconds: float = DEFAULT_MAX_SECONDS


class PromptRenderer:
    """Compiles prompts (keeping the last ``cache_size`` distinct ones) and renders them under the limits."""

    def __init__(self, limits: RenderLimits | None = None, cache_size: int = COMPILED_CACHE_SIZE) -> None:
        self.limits = limits or RenderLimits()
        self._env = LimitedSandbox(self.limits.max_output_chars)
        self._cache_size = max(1, cache_size)
        self._compiled: OrderedDict[str, Template] = OrderedDict()
        self._lock = threading.Lock()  # record threads and jobs share the renderer

    def compile(self, source: str) -> Template:
        with self._lock:
            template = self._compiled.get(source)
            if template is not None:
                self._compiled.move_to_end(source)
                return template
        try:
            template = self._env.from_string(source)
        except TemplateError as error:
            raise RenderError(f"the prompt is not a valid template: {error}") from error
        with self._lock:
            self._compiled[source] = template
            while len(self._compiled) > self._cache_size:
                self._compiled.popitem(last=False)
        return template

    def render(self, prompt: str | Template, context: Mapping[str, Any]) -> str:
        """Render a prompt's text, or a template this renderer compiled (``compile``)."""
        template = prompt if isinstance(prompt, Template) else self.compile(prompt)
        deadline = Deadline(self.limits.max_seconds)
        return render_limited(template, context, self.limits.max_output_chars, deadline)
