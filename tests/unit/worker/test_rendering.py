"""Prompt rendering in the limited sandbox: escapes, bombs, limits, step outputs."""

from __future__ import annotations

import time

import pytest

from functions.worker.rendering import PromptRenderer, RenderError, RenderLimits

pytestmark = pytest.mark.unit


@pytest.fixture
def renderer() -> PromptRenderer:
    return PromptRenderer(RenderLimits(max_output_chars=10_000, max_seconds=0.3))


def test_seed_fields_and_earlier_step_outputs_are_in_the_context(renderer):
    context = {"author": {"name": "Ada"}, "steps": {"draft": {"output": "A draft."}}}
    assert renderer.render("{{ author.name }}: {{ steps.draft.output }}", context) == "Ada: A draft."


def test_optional_fields_use_default_and_missing_ones_are_errors(renderer):
    assert renderer.render("{{ nick | default('none') }}", {}) == "none"
    with pytest.raises(RenderError, match="'nick' is undefined"):
        renderer.render("{{ nick }}", {})


@pytest.mark.parametrize(
    "prompt",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ ''.__class__ }}",
        "{{ joiner.__init__.__globals__.os }}",
        "{{ self.__init__.__globals__ }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ ()|attr('__class__') }}",
    ],
)
def test_sandbox_escapes_fail(renderer, prompt):
    with pytest.raises(RenderError, match=r"unsafe|sandbox"):
        renderer.render(prompt, {})


@pytest.mark.parametrize(
    "bomb",
    [
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
        "{{ 'a' * 1000000000 }}",
        "{{ 9 ** (9 ** 9) }}",
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "{% set a %}{% for i in range(1000) %}xxxxxxxxxx{% endfor %}{% endset %}"
        "{% set b %}{% for i in range(100000) %}{{ a }}{% endfor %}{% endset %}{{ b }}",
        "{{ 'x' | center(999999999) }}",
        "{{ '{:>999999999}'.format('a') }}",
        "{{ '%999999999s' % 'a' }}",
        "{{ (['x' * 5000] * 1000) | join }}",
        "{{ ('x' * 5000) | replace('x', 'yyyyyyyyyy') }}",
        "{{ ''.join(['x' * 5000] * 100) }}",
        "{{ 'x'.ljust(999999999) }}",
        "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
        "{{ lipsum(1000000) }}",
    ],
)
def test_template_bombs_fail_quickly(renderer, bomb):
    began = time.monotonic()
    with pytest.raises(RenderError):
        renderer.render(bomb, {})
    assert time.monotonic() - began < 2


def test_a_syntax_error_is_a_render_error(renderer):
    with pytest.raises(RenderError, match="not a valid template"):
        renderer.compile("{{ x }")


def test_the_trace_function_in_place_before_rendering_is_restored(renderer):
    import sys

    def tracer(frame, event, arg):
        return None

    sys.settrace(tracer)
    try:
        renderer.render("{{ 1 }}", {})
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(None)


def test_ordinary_templates_still_render(renderer):
    prompt = (
        "{% for tag in tags %}{{ loop.index }}. {{ tag | title }}"
        "{% if not loop.last %}, {% endif %}{% endfor %}"
        " — {{ '%s and %s' % (a, b) }} {{ '{}!'.format(a) }} {{ 'x' * 3 }} {{ [1, 2] + [3] }} {{ 2 ** 10 }}"
    )
    out = renderer.render(prompt, {"tags": ["red", "blue"], "a": "A", "b": "B"})
    assert out == "1. Red, 2. Blue — A and B A! xxx [1, 2, 3] 1024"
