"""Template definition rules and the seed fields its prompts read.

Every prompt is parsed and compiled in the worker's hardened sandbox (``LimitedSandbox``, below).
The seed fields are found by walking the parsed AST (``jinja2.nodes``):

- a chain of attribute / constant-string subscripts rooted at a free name is one dotted path:
  ``{{ author.name }}`` → ``author.name``, ``{{ author["bio"] }}`` → ``author.bio``;
- a method call reads its object: ``{{ author.name.upper() }}`` → ``author.name``;
- a non-string subscript ends the path: ``{{ author.books[0].title }}`` → ``author.books``;
- names bound inside the template (loop targets, ``loop``, ``set``, macro arguments, ``with``) and
  Jinja's globals (``range``, ``dict`` …) are not seed fields: ``{% for b in author.books %}{{ b.title
  }}{% endfor %}`` → ``author.books``;
- ``steps`` is reserved: ``steps.<id>...`` must name an earlier step (its output is not a seed field);
  a later, unknown or dynamic step reference is an error.

``include``/``extends``/``import`` are refused: prompts are self-contained (there is no loader).

Prompts are parsed and compiled in the worker's hardened sandbox (``functions.common.sandbox``), so
compiling never folds a huge constant (``{{ 'x' * 10**9 }}`` used to be built inside the API
Lambda). Then every *closed* expression (one that reads no seed field, only literals and Jinja's
globals) is evaluated there under the sandbox's size limit and one time budget for the whole
definition: a constant bomb (``{{ [1]*10**9 }}``, ``{{ 10**5000 }}``, a huge ``join``) is a 400
naming its step and line, in milliseconds, instead of a template that fails every record later.
Expressions that read seed fields are bounded by the worker when it renders them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable

from jinja2 import Template, TemplateError, TemplateSyntaxError, nodes
from jinja2.sandbox import SecurityError

from functions.common.errors import BadRequestError
from functions.common.sandbox import (
    DEFAULT_MAX_OUTPUT_CHARS,
    Deadline,
    LimitedSandbox,
    LimitExceeded,
    RenderError,
    render_limited,
)
from functions.templates.models import (
    MAX_DEFINITION_BYTES,
    MAX_STEPS,
    STEP_ID_PATTERN,
    TemplateDefinition,
    definition_to_dict,
)

STEPS_NAME = "steps"
_STEP_ID = re.compile(STEP_ID_PATTERN)
_ENV = LimitedSandbox(DEFAULT_MAX_OUTPUT_CHARS)
_GLOBALS = frozenset(_ENV.globals)
# The time all closed expressions of one definition may take together.
CONSTANT_CHECK_SECONDS = 1.0


class TemplateDefinitionError(BadRequestError):
    """A definition breaks a rule; ``details`` says which step and line when one applies."""


def analyze_definition(definition: TemplateDefinition) -> list[str]:
    """Check the definition's rules; answer its schema requirements (sorted dotted seed paths)."""
    size = len(json.dumps(definition_to_dict(definition), separators=(",", ":")).encode())
    if size > MAX_DEFINITION_BYTES:
        raise TemplateDefinitionError(
            f"The template definition is {size} bytes; the limit is {MAX_DEFINITION_BYTES}"
        )
    steps = definition.steps
    if not 1 <= len(steps) <= MAX_STEPS:
        raise TemplateDefinitionError(f"A template has 1 to {MAX_STEPS} steps, not {len(steps)}")
    seen: set[str] = set()
    for step in steps:
        if not _STEP_ID.fullmatch(step.id) or step.id == STEPS_NAME:
            raise TemplateDefinitionError(
                f"Step id {step.id!r} must be an identifier (letters, digits, underscores; not "
                f"starting with a digit; at most 64 characters; not {STEPS_NAME!r})"
            )
        if step.id in seen:
            raise TemplateDefinitionError(f"Step id {step.id!r} is used more than once")
        seen.add(step.id)
        if not step.prompt.strip():
            raise TemplateDefinitionError(f"Step {step.id!r} has an empty prompt")

    requirements: set[str] = set()
    earlier: list[str] = []
    deadline = Deadline(CONSTANT_CHECK_SECONDS)
    for step in steps:
        requirements.update(prompt_fields(step.id, step.prompt, earlier, deadline))
        earlier.append(step.id)
    return sorted(requirements)


def prompt_fields(
    step_id: str, prompt: str, earlier_steps: Iterable[str], deadline: Deadline | None = None
) -> set[str]:
    """The seed paths one prompt reads. Raises TemplateDefinitionError on syntax or step errors,
    and on a closed expression that breaks the sandbox's limits."""
    try:
        tree = _ENV.parse(prompt)
        _ENV.compile(tree)  # filters/tests are resolved at compile time
    except TemplateSyntaxError as error:
        raise TemplateDefinitionError(
            f"Step {step_id!r}: template syntax error on line {error.lineno}: {error.message}",
            details={"step": step_id, "line": error.lineno},
        ) from None
    except RecursionError:
        raise TemplateDefinitionError(
            f"Step {step_id!r}: the prompt nests expressions too deeply", details={"step": step_id}
        ) from None
    walker = _FieldWalker(step_id, frozenset(earlier_steps))
    walker.visit_body(tree.body, set())
    check_closed_expressions(step_id, tree, deadline or Deadline(CONSTANT_CHECK_SECONDS))
    return walker.fields


# Literals are cheap, and a slice is only an expression inside a subscript.
_NOT_EVALUATED = (nodes.Const, nodes.TemplateData, nodes.Slice)


def _is_closed(node: nodes.Node) -> bool:
    """True when the expression reads only literals and Jinja's globals (no seed field, no variable)."""
    inner = [node, *node.find_all(nodes.Node)]  # find_all yields descendants only
    contextual = (nodes.NSRef, nodes.ContextReference, nodes.DerivedContextReference)
    return all(
        (n.name in _GLOBALS and n.ctx == "load")
        if isinstance(n, nodes.Name)
        else not isinstance(n, contextual)
        for n in inner
    )


def _closed_expressions(node: nodes.Node) -> Iterable[nodes.Expr]:
    """The outermost closed, non-literal expressions under ``node``."""
    for child in node.iter_child_nodes():
        if isinstance(child, nodes.Expr) and not isinstance(child, _NOT_EVALUATED) and _is_closed(child):
            yield child
            continue
        yield from _closed_expressions(child)


def _compile_expression(expression: nodes.Expr) -> Template | None:
    """``{{ expression }}`` compiled on its own; None for a fragment that only compiles in place."""
    template = nodes.Template([nodes.Output([expression], lineno=expression.lineno)], lineno=1)
    template.set_environment(_ENV)
    try:
        return _ENV.template_class.from_code(_ENV, _ENV.compile(template), _ENV.make_globals(None))
    except (TemplateError, SyntaxError, TypeError, ValueError):
        return None


def check_closed_expressions(step_id: str, tree: nodes.Template, deadline: Deadline) -> None:
    """Evaluate every closed expression in the limited sandbox; a limit it breaks is a 400."""
    for expression in _closed_expressions(tree):
        compiled = _compile_expression(expression)
        if compiled is None:
            continue
        try:
            render_limited(compiled, {}, DEFAULT_MAX_OUTPUT_CHARS, deadline)
        except (LimitExceeded, SecurityError) as error:
            raise TemplateDefinitionError(
                f"Step {step_id!r}, line {expression.lineno}: {error}",
                details={"step": step_id, "line": expression.lineno},
            ) from None
        except RenderError as error:
            if isinstance(error.__cause__, SecurityError | OverflowError):
                raise TemplateDefinitionError(
                    f"Step {step_id!r}, line {expression.lineno}: {error.__cause__}",
                    details={"step": step_id, "line": expression.lineno},
                ) from None
            # Any other error (a type error in a branch that never runs, say) is the worker's to
            # report per record: the definition itself is not dangerous.


class _FieldWalker:
    def __init__(self, step_id: str, earlier_steps: frozenset[str]) -> None:
        self.step_id = step_id
        self.earlier = earlier_steps
        self.fields: set[str] = set()

    # ---------------------------------------------------------- statements

    def visit_body(self, body: Iterable[nodes.Node], bound: set[str]) -> None:
        """Visit statements in order; ``set`` at this level binds names for what follows."""
        for node in body:
            self.visit(node, bound)

    def visit(self, node: nodes.Node, bound: set[str]) -> None:
        if isinstance(node, (nodes.Include, nodes.Extends, nodes.Import, nodes.FromImport)):
            raise self._error(node, "include, extends and import are not supported in prompts")
        for types, visit_statement in self._SCOPED:
            if isinstance(node, types):
                visit_statement(self, node, bound)
                return
        if isinstance(node, (nodes.Name, nodes.Getattr, nodes.Getitem)):
            self.visit_path(node, bound)
        elif isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
            self._visit_method_call(node, bound)
        else:
            for child in node.iter_child_nodes():
                self.visit(child, bound)

    def _visit_for(self, node: nodes.For, bound: set[str]) -> None:
        self.visit(node.iter, bound)
        inner = bound | _target_names(node.target) | {"loop"}
        if node.test is not None:
            self.visit(node.test, inner)
        self.visit_body(node.body, set(inner))
        self.visit_body(node.else_, set(bound))

    def _visit_assign(self, node: nodes.Assign, bound: set[str]) -> None:
        self.visit(node.node, bound)
        bound.update(_target_names(node.target))

    def _visit_assign_block(self, node: nodes.AssignBlock, bound: set[str]) -> None:
        if node.filter is not None:
            self.visit(node.filter, bound)
        self.visit_body(node.body, set(bound))
        bound.update(_target_names(node.target))

    def _visit_macro(self, node: nodes.Macro | nodes.CallBlock, bound: set[str]) -> None:
        args = {arg.name for arg in node.args} | {"varargs", "kwargs", "caller"}
        for default in node.defaults:
            self.visit(default, bound)
        if isinstance(node, nodes.CallBlock):
            self.visit(node.call, bound)
        else:
            bound.add(node.name)
        self.visit_body(node.body, bound | args)

    def _visit_with(self, node: nodes.With, bound: set[str]) -> None:
        for value in node.values:
            self.visit(value, bound)
        inner = set(bound)
        for target in node.targets:
            inner.update(_target_names(target))
        self.visit_body(node.body, inner)

    def _visit_method_call(self, node: nodes.Call, bound: set[str]) -> None:
        # A method call reads the object it is called on, not a field named after the method.
        assert isinstance(node.node, nodes.Getattr)
        self.visit(node.node.node, bound)
        arguments: list[nodes.Node | None] = [*node.args, *node.kwargs, node.dyn_args, node.dyn_kwargs]
        for argument in arguments:
            if argument is not None:
                self.visit(argument, bound)

    # Statements that bind names: each visited by its own rule.
    _SCOPED: tuple[tuple[type | tuple[type, ...], Callable[..., None]], ...] = (
        (nodes.For, _visit_for),
        (nodes.Assign, _visit_assign),
        (nodes.AssignBlock, _visit_assign_block),
        ((nodes.Macro, nodes.CallBlock), _visit_macro),
        (nodes.With, _visit_with),
    )

    # --------------------------------------------------------------- paths

    def visit_path(self, node: nodes.Expr, bound: set[str]) -> None:
        parts: list[str] = []
        current: nodes.Node = node
        while True:
            if isinstance(current, nodes.Getattr):
                parts.append(current.attr)
                current = current.node
            elif isinstance(current, nodes.Getitem):
                arg = current.arg
                if isinstance(arg, nodes.Const) and isinstance(arg.value, str):
                    parts.append(arg.value)
                else:
                    parts.clear()  # a computed subscript: only the object before it is known
                    self.visit(arg, bound)
                current = current.node
            elif isinstance(current, nodes.Name):
                break
            else:
                self.visit(current, bound)  # a path off a call, literal, filter …: no seed root
                return
        name = current.name
        if current.ctx != "load" or name in bound or name in _GLOBALS:
            return
        parts.reverse()
        if name == STEPS_NAME:
            self._check_step_reference(current, parts)
            return
        self.fields.add(".".join([name, *parts]))

    def _check_step_reference(self, node: nodes.Node, parts: list[str]) -> None:
        if not parts:
            raise self._error(node, f"'{STEPS_NAME}' must be used as {STEPS_NAME}.<earlier step id>.output")
        target = parts[0]
        if target == self.step_id:
            raise self._error(node, f"step {target!r} cannot read its own output")
        if target not in self.earlier:
            raise self._error(node, f"{STEPS_NAME}.{target} does not name an earlier step")

    def _error(self, node: nodes.Node, message: str) -> TemplateDefinitionError:
        return TemplateDefinitionError(
            f"Step {self.step_id!r}, line {node.lineno}: {message}",
            details={"step": self.step_id, "line": node.lineno},
        )


def _target_names(target: nodes.Node) -> set[str]:
    if isinstance(target, nodes.Name):
        return {target.name}
    if isinstance(target, nodes.Tuple):
        names: set[str] = set()
        for item in target.items:
            names |= _target_names(item)
        return names
    return set()  # NSRef (namespace attribute): binds nothing new
