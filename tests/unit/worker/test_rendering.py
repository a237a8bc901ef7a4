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


def test_a_loop_that_calls_nothing_is_stopped_by_the_deadline(renderer):
    """Iterating a ready list makes no call per iteration: only the line events of the template's
    looping frame see the time pass."""
    bomb = "{% set xs = range(100000) | list %}{% for a in xs %}{% for b in xs %}{% endfor %}{% endfor %}"
    began = time.monotonic()
    with pytest.raises(RenderError, match=r"longer than 0\.3 s"):
        renderer.render(bomb, {})
    assert time.monotonic() - began < 2


def test_only_code_that_jumps_backwards_can_loop():
    from functions.common.sandbox import can_loop

    def straight(x):
        return str(x) + "!" if x else "?"

    def for_loop(xs):
        total = 0
        for x in xs:
            total += x
        return total

    def delegate(xs):
        yield from xs

    assert [can_loop(f.__code__) for f in (straight, for_loop, delegate)] == [False, True, True]
    assert [can_loop(f.__code__) for f in (straight, for_loop, delegate)] == [False, True, True]  # cached


def test_a_code_objects_loop_flag_goes_with_it():
    """The flags are kept by code object id; a template compiled and dropped leaves nothing behind
    (and a new code object at a recycled id is never taken for the old one)."""
    import gc

    from functions.common import sandbox

    namespace: dict = {}
    exec(compile("def f(xs):\n    for x in xs:\n        pass\n", "<template>", "exec"), namespace)
    code = namespace.pop("f").__code__
    key = id(code)

    assert sandbox.can_loop(code)
    assert key in sandbox._LOOPS
    del code
    gc.collect()
    assert key not in sandbox._LOOPS


def test_the_same_prompt_text_is_compiled_once_and_an_edited_one_anew(renderer):
    first = renderer.compile("Hello {{ name }}")

    assert renderer.compile("Hello {{ name }}") is first
    edited = renderer.compile("Goodbye {{ name }}")  # the template's next version
    assert edited is not first
    assert renderer.render(edited, {"name": "Ada"}) == "Goodbye Ada"
    assert renderer.render("Hello {{ name }}", {"name": "Ada"}) == "Hello Ada"


def test_the_compiled_prompts_kept_are_the_most_recently_used():
    renderer = PromptRenderer(cache_size=2)
    a, b = renderer.compile("a {{ x }}"), renderer.compile("b {{ x }}")

    assert renderer.compile("a {{ x }}") is a  # used again: b is now the oldest
    renderer.compile("c {{ x }}")

    assert renderer.compile("a {{ x }}") is a
    assert renderer.compile("b {{ x }}") is not b  # dropped, compiled again
    assert renderer.render("b {{ x }}", {"x": 1}) == "b 1"


def test_a_compiled_prompt_keeps_no_state_between_renders(renderer):
    """Two jobs (or records) with the same prompt text share its compiled template: nothing one
    render sets or reads is seen by the next."""
    template = renderer.compile(
        "{% set ns = namespace(count=0) %}{% for i in items %}{% set ns.count = ns.count + 1 %}{% endfor %}"
        "{% set seen = name %}{{ seen }}:{{ ns.count }}:{{ extra | default('-') }}"
    )

    assert renderer.render(template, {"items": [1, 2, 3], "name": "job-1", "extra": "x"}) == "job-1:3:x"
    assert renderer.render(template, {"items": [], "name": "job-2"}) == "job-2:0:-"
    assert renderer.render(template, {"items": [1], "name": "job-1"}) == "job-1:1:-"


def test_the_sandbox_globals_are_there_and_lipsum_is_not(renderer):
    assert renderer.render("{{ range(3) | list }} {{ dict(a=1) }} {{ namespace(a=2).a }}", {}) == (
        "[0, 1, 2] {'a': 1} 2"
    )
    with pytest.raises(RenderError, match="lipsum"):
        renderer.render("{{ lipsum() }}", {})
