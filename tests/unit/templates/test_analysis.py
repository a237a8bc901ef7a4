"""Template rules and the seed fields prompts read (Jinja2 AST walk)."""

from __future__ import annotations

from typing import Any

import pytest

from functions.templates.analysis import TemplateDefinitionError, analyze_definition
from functions.templates.models import TemplateDefinition

pytestmark = pytest.mark.unit


def definition(*prompts: str, ids: list[str] | None = None) -> TemplateDefinition:
    names = ids or [f"s{i}" for i in range(len(prompts))]
    return TemplateDefinition(steps=[{"id": i, "prompt": p} for i, p in zip(names, prompts, strict=True)])


def fields(*prompts: str, **kwargs: Any) -> list[str]:
    return analyze_definition(definition(*prompts, **kwargs))


def failure(*prompts: str, **kwargs: Any) -> TemplateDefinitionError:
    with pytest.raises(TemplateDefinitionError) as caught:
        fields(*prompts, **kwargs)
    assert caught.value.status_code == 400
    return caught.value


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("Write about {{ author.name }}.", ["author.name"]),
        ('Bio: {{ author["bio"] }}', ["author.bio"]),
        ("{% for b in author.books %}{{ b.title }}{% endfor %}", ["author.books"]),
        ("{{ author.name | upper }} {{ topic|default('x') }}", ["author.name", "topic"]),
        ("{{ author.name.upper() }}", ["author.name"]),
        ("{{ author.books[0].title }}", ["author.books"]),
        ("{{ author['address']['city'] }}", ["author.address.city"]),
        ("{{ author.books[idx] }}", ["author.books", "idx"]),
        ("{% set who = author.name %}{{ who }} {{ who.first }}", ["author.name"]),
        ("{% for k, v in meta.items() %}{{ k }}={{ v }}{{ loop.index }}{% endfor %}", ["meta"]),
        (
            "{% for b in author.books if b.year > min_year %}{{ b }}{% else %}{{ fallback }}{% endfor %}",
            ["author.books", "fallback", "min_year"],
        ),
        ("{% macro hi(p) %}{{ p.name }}{{ greeting }}{% endmacro %}{{ hi(author) }}", ["author", "greeting"]),
        ("{% with x = author.name %}{{ x.y }}{% endwith %}", ["author.name"]),
        ("{% for i in range(3) %}{{ i }}{% endfor %}{{ dict(a=1) }}", []),
        ("{% if author.age is defined and author.age > 3 %}old{% endif %}", ["author.age"]),
        ("plain text, no fields", []),
    ],
)
def test_seed_fields_are_sorted_dotted_paths(prompt: str, expected: list[str]) -> None:
    assert fields(prompt) == expected


def test_requirements_are_the_sorted_union_over_steps_without_earlier_step_outputs() -> None:
    result = fields(
        "Outline a story about {{ topic }} for {{ author.name }}.",
        "Expand {{ steps.outline.output }} in the style of {{ author.style }}; {{ topic }}.",
        "Title for {{ steps['expand'].output }} and {{ steps.outline.output }}",
        ids=["outline", "expand", "title"],
    )
    assert result == ["author.name", "author.style", "topic"]


@pytest.mark.parametrize(
    ("prompts", "message"),
    [
        (["{{ steps.second.output }}", "x"], "does not name an earlier step"),
        (["{{ steps.nope.output }}"], "does not name an earlier step"),
        (["{{ steps.s0.output }}"], "its own output"),
        (["x", "{{ steps }}"], "earlier step id"),
        (["x", "{{ steps[name].output }}"], "earlier step id"),
    ],
)
def test_a_later_unknown_or_dynamic_step_reference_is_refused(prompts: list[str], message: str) -> None:
    error = failure(*prompts, ids=["s0", "second"][: len(prompts)])
    assert message in error.message


def test_a_syntax_error_names_the_step_and_line() -> None:
    error = failure("fine {{ a }}", "line one\nline two {{ a + }}\nline three", ids=["a1", "b2"])
    assert "'b2'" in error.message
    assert "line 2" in error.message
    assert error.details == {"step": "b2", "line": 2}


def test_an_unknown_filter_is_refused_at_compile_time() -> None:
    error = failure("one\n{{ x | no_such_filter }}")
    assert "line 2" in error.message


@pytest.mark.parametrize("tag", ["{% include 'x' %}", "{% extends 'x' %}", "{% import 'x' as y %}"])
def test_loading_other_templates_is_refused(tag: str) -> None:
    assert "not supported" in failure(tag).message


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (["a", "a"], "more than once"),
        (["1abc"], "must be an identifier"),
        (["has-dash"], "must be an identifier"),
        (["steps"], "must be an identifier"),
        (["x" * 65], "must be an identifier"),
    ],
)
def test_step_ids_are_unique_identifiers(ids: list[str], message: str) -> None:
    assert message in failure(*["p"] * len(ids), ids=ids).message


def test_step_count_is_one_to_ten() -> None:
    assert "1 to 10 steps, not 0" in failure().message
    assert "not 11" in failure(*["p"] * 11).message
    assert fields(*["p"] * 10) == []


def test_the_definition_is_at_most_50_kb() -> None:
    assert fields("x" * 50_000) == []
    assert "limit is 51200" in failure("x" * 52_000).message


def test_an_empty_prompt_is_refused() -> None:
    assert "empty prompt" in failure("   ").message


# The exact bombs: the plain sandbox folded them while compiling, inside the API Lambda
# (201 after 19 s, 502 or 500). Now each is a 400 naming the step and line.
@pytest.mark.parametrize(
    ("prompt", "reason"),
    [
        ("{{ 'x' * 10**9 }}", "repetition would exceed"),
        ("{{ [1]*10**9 }}", "repetition would exceed"),
        ("{{ ('x'*100000)|join('y'*100000) }}", "join would exceed"),
        ("{{ 10**5000 }}", "too large"),
        ("Intro\n{% set big = 'ab' * 10**8 %}{{ big }}", "repetition would exceed"),
        ("{% for i in range(10**9) %}{{ i }}{% endfor %}", "Range too big"),
        ("{{ ''.__class__.__mro__ }}", "unsafe"),
    ],
)
def test_constant_bombs_are_refused_at_create_with_the_step_and_line(prompt: str, reason: str) -> None:
    error = failure("Hello {{ author.name }}", prompt)
    assert reason in error.message
    assert error.details == {"step": "s1", "line": prompt.count("\n") + 1}


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("{{ 'ab' * 3 }} {{ 2 ** 10 }} {{ [1, 2] | join(', ') }} {{ author.name * 2 }}", ["author.name"]),
        ("{% for i in range(3) %}{{ author.name }}{% endfor %}", ["author.name"]),
        # A closed expression that fails for another reason is the worker's to report per record.
        ("{% if author.young %}{{ 'a' - 1 }}{% endif %}", ["author.young"]),
    ],
)
def test_closed_expressions_within_the_limits_are_accepted(prompt: str, expected: list[str]) -> None:
    assert fields(prompt) == expected


def test_a_prompt_nested_too_deep_for_the_parser_is_a_400() -> None:
    error = failure("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}")
    assert "too deeply" in error.message
