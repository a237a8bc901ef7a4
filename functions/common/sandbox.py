"""The hardened Jinja2 sandbox shared by template analysis (API) and prompt rendering (worker).

A prompt is user input, so compiling or rendering it must neither leak the process (the sandbox
refuses ``_`` attributes such as ``''.__class__.__mro__`` or ``cycler.__init__.__globals__``) nor
hang or exhaust it (a *template bomb*). The limits, each turned into ``RenderError``:

- **size**: the rendered prompt, every captured block (``{% set %}…{% endset %}``, macros, call
  blocks), every ``~`` concatenation and every ``+``/``*`` of strings or lists is checked against
  ``max_output_chars`` *before* it is built, so nothing larger than about twice the limit is ever
  allocated; filters and string methods that pad or replace (``center``, ``indent``, ``format``,
  ``replace``, ``ljust``, ``join`` …) are checked the same way, and ``**`` refuses huge powers;
- **no constant folding of big values**: ``*``, ``**``, ``+`` and ``%`` are intercepted operators,
  so Jinja's compiler never folds ``'x' * 10**9`` at compile time (it would build the value while
  compiling, outside every check); they are evaluated at render time through ``call_binop``;
- **time**: a ``Deadline`` trace function checks the clock on every call (template code and
  everything it calls in Python) and on every line of the template's own frames that can loop, and
  raises once its time has passed, so loops that print nothing (nested ``range`` loops) stop too;
- **recursion**: a recursive macro ends as a ``RecursionError`` and is reported like the rest.

``render_limited`` renders a compiled template under these limits; the worker's ``PromptRenderer``
and the API's template analysis both use it.

Cost (the worker renders every step of every record): a trace function slows every Python frame
of its thread, so only the template's own execution is traced (the context is built before the
trace is set), and line events are asked for only in template frames whose code can jump backwards
(a loop): a frame without one runs each instruction at most once, and everything it calls has its
own call event, so the clock is still read at least once per loop iteration or call. Templates keep
their globals as a plain dict (Jinja's ``ChainMap`` over the environment's globals is copied into
every render's context, and iterating it cost more than rendering a short prompt).
"""

from __future__ import annotations

import dis
import math
import re
import sys
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from types import CodeType, FrameType
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment, SecurityError, safe_range

DEFAULT_MAX_OUTPUT_CHARS = 200_000
DEFAULT_MAX_SECONDS = 2.0
TEMPLATE_FILENAME = "<template>"
# A format spec or printf width with more digits than this is refused outright.
_WIDTH = re.compile(r"\d+")


class RenderError(Exception):
    """A prompt could not be rendered safely; ``str(error)`` says why, for the record's error."""


class LimitExceeded(RenderError):
    """A size, time or power limit was hit: the prompt is a bomb, whatever the seed record."""


def _size(value: Any) -> int:
    try:
        return len(value)
    except TypeError:
        return 0


class LimitedSandbox(SandboxedEnvironment):
    """A ``SandboxedEnvironment`` whose every way of building big values is bounded."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, max_output_chars: int) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            finalize=self._finalize,
        )
        self.max_output_chars = max_output_chars
        self.template_class = _LimitedTemplate
        # Generated code binds ``concat = environment.concat``: captured blocks are checked.
        self.concat = self.limited_concat  # type: ignore[method-assign]
        self.globals.pop("lipsum", None)  # lipsum(n=10**7) is a bomb with no use in a prompt
        for name in ("center", "indent", "format", "replace", "wordwrap", "truncate", "join"):
            self.filters[name] = self._checked_callable(self.filters[name], f"filter {name!r}")

    # ------------------------------------------------------------- checks

    def _refuse(self, what: str) -> None:
        raise LimitExceeded(
            f"{what} would exceed the prompt size limit of {self.max_output_chars} characters"
        )

    def check_size(self, size: int, what: str) -> None:
        if size > self.max_output_chars:
            self._refuse(what)

    def limited_concat(self, parts: Iterable[Any]) -> str:
        chunks: list[str] = []
        total = 0
        for part in parts:
            text = part if isinstance(part, str) else str(part)
            total += len(text)
            if total > self.max_output_chars:
                self._refuse("a captured block or concatenation")
            chunks.append(text)
        return "".join(chunks)

    def _finalize(self, value: Any) -> Any:
        # Runs for every ``{{ }}``: the size check is inlined (one call less per expression).
        if isinstance(value, str | list | tuple | dict) and len(value) > self.max_output_chars:
            self._refuse("an expression's value")
        return value

    def _check_arguments(self, args: Iterable[Any], kwargs: Mapping[str, Any], what: str) -> None:
        for arg in (*args, *kwargs.values()):
            if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > self.max_output_chars:
                self._refuse(f"{what} with argument {arg}")
            if isinstance(arg, str) and ("%" in arg or "{" in arg):
                for width in _WIDTH.findall(arg):
                    if len(width) > 9 or int(width) > self.max_output_chars:
                        self._refuse(f"{what} with width {width[:12]}")

    def _checked_callable(self, function: Callable[..., Any], what: str) -> Callable[..., Any]:
        """Wrap a built-in filter: refuse huge widths and results, and pre-check ``join`` and
        ``replace``, whose results can be far larger than their inputs."""
        env = self
        passes_context = hasattr(function, "jinja_pass_arg")

        def checked(*args: Any, **kwargs: Any) -> Any:
            values = args[1:] if passes_context else args
            if what == "filter 'join'" and values:
                items = list(values[0])
                separator = values[1] if len(values) > 1 else kwargs.get("d", "")
                env._check_join(separator, items)
                args = (*args[: len(args) - len(values)], items, *values[1:])
            else:
                env._check_arguments(values, kwargs, what)
            if what == "filter 'replace'" and len(values) >= 3:
                env._check_replace(values[0], values[1], values[2])
            result = function(*args, **kwargs)
            env.check_size(_size(result), what)
            return result

        if passes_context:
            checked.jinja_pass_arg = function.jinja_pass_arg  # type: ignore[attr-defined]
        return checked

    def _check_replace(self, text: Any, old: Any, new: Any) -> None:
        text, old, new = str(text), str(old), str(new)
        count = len(text) + 1 if old == "" else text.count(old)
        self.check_size(len(text) + count * max(len(new) - len(old), 0), "replace")

    def _check_join(self, separator: Any, items: list[Any]) -> None:
        total = sum(len(item) if isinstance(item, str) else 1 for item in items)
        self.check_size(total + len(str(separator)) * max(len(items) - 1, 0), "join")

    # ------------------------------------------------------ sandbox hooks

    def call_binop(self, context: Context, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "*":
            for sequence, count in ((left, right), (right, left)):
                if isinstance(sequence, str | list | tuple) and isinstance(count, int):
                    self.check_size(len(sequence) * max(count, 0), "repetition")
        elif operator_name == "**":
            huge = isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0
            if huge and right * math.log2(abs(left)) > 4096:
                raise LimitExceeded(f"power {left} ** {right} is too large")
        elif operator_name == "+":
            if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
                self.check_size(len(left) + len(right), "concatenation")
        elif operator_name == "%" and isinstance(left, str):
            self._check_arguments((left,), {}, "printf-style formatting")
        return super().call_binop(context, operator_name, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        name = getattr(__obj, "__name__", "callable")
        if __obj is not safe_range:  # range() has its own bound (MAX_RANGE) and builds no text
            __self._check_arguments(args, kwargs, f"{name}()")
        # str.format arrives wrapped by the sandbox (``functools.update_wrapper``).
        owner = getattr(__obj, "__self__", None) or getattr(
            getattr(__obj, "__wrapped__", None), "__self__", None
        )
        if isinstance(owner, str) and name == "replace" and len(args) >= 2:
            __self._check_replace(owner, args[0], args[1])
        if isinstance(owner, str) and name == "join" and args:
            items = list(args[0])
            __self._check_join(owner, items)
            args = (items, *args[1:])
        if isinstance(owner, str) and name in ("format", "format_map"):
            __self._check_arguments((owner,), {}, f"{name}()")
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, str | list | tuple):
            __self.check_size(len(result), f"{name}()")
        return result


class _LimitedTemplate(Template):
    @classmethod
    def from_code(cls, environment: Any, code: Any, globals: Any, uptodate: Any = None) -> Template:
        template = super().from_code(environment, code, globals, uptodate)
        # ``a ~ b`` compiles to the module-level ``str_join``/``markup_join``: bound them too.
        namespace = template.root_render_func.__globals__
        namespace["str_join"] = environment.limited_concat
        namespace["markup_join"] = environment.limited_concat
        # Every render copies the globals into its context: a dict copies fast, Jinja's ChainMap over
        # the environment's globals does not. The environment's globals do not change once built.
        template.globals = dict(template.globals)
        return template


# Every jump opcode: 3.13 lists them all in ``hasjump`` (``hasjrel``/``hasjabs`` are legacy there).
_JUMPS = frozenset(getattr(dis, "hasjump", ())) | frozenset(dis.hasjrel) | frozenset(dis.hasjabs)
# Whether a code object can loop, by id (hashing a code object, or a WeakKeyDictionary, costs more
# than the render it is asked for): the weak reference both checks that the id is still this code
# object's and drops the entry when the code object goes.
_LOOPS: dict[int, tuple[weakref.ref[CodeType], bool]] = {}


def can_loop(code: CodeType) -> bool:
    """True when ``code`` has a backward jump (a ``for`` loop, ``yield from``): without one, each of
    its instructions runs at most once per call, so it cannot spin without calling something."""
    key = id(code)
    entry = _LOOPS.get(key)
    if entry is not None and entry[0]() is code:
        return entry[1]
    loops = any(
        ins.opcode in _JUMPS and isinstance(ins.argval, int) and ins.argval <= ins.offset
        for ins in dis.get_instructions(code)
    )
    _LOOPS[key] = (weakref.ref(code, lambda ref: _forget(key, ref)), loops)
    return loops


def _forget(key: int, ref: weakref.ref[CodeType]) -> None:
    entry = _LOOPS.get(key)
    if entry is not None and entry[0] is ref:
        del _LOOPS[key]


class Deadline:
    """A trace function that stops template code once the render has run too long: the clock is
    read on every call event (any Python frame) and on every line of template frames that can loop.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._deadline = clock() + seconds
        self._seconds = seconds

    def _expired(self) -> None:
        raise LimitExceeded(f"rendering took longer than {self._seconds:g} s")

    def trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        # Called for every frame entered while rendering: the check is inlined, not a method call.
        if self._clock() > self._deadline:
            self._expired()
        code = frame.f_code
        if code.co_filename == TEMPLATE_FILENAME and can_loop(code):
            return self._trace_lines
        return None

    def _trace_lines(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line" and self._clock() > self._deadline:
            self._expired()
        return self._trace_lines


def render_limited(
    template: Template, context: Mapping[str, Any], max_output_chars: int, deadline: Deadline
) -> str:
    """Render ``template`` (compiled by a ``LimitedSandbox``) under the size limit and ``deadline``.

    Every failure is a ``RenderError`` (``LimitExceeded`` for the size, time and power limits).
    This is ``Template.generate`` with the context built before the trace is set, so only the
    template's own execution is traced; an error's traceback is rewritten onto the template's
    lines as ``generate`` does (the dry run names the line), once the trace is off.
    """
    try:
        render_context = template.new_context(dict(context))
        previous = sys.gettrace()
        sys.settrace(deadline.trace)
        try:
            chunks: list[str] = []
            total = 0
            for chunk in template.root_render_func(render_context):
                total += len(chunk)
                if total > max_output_chars:
                    raise LimitExceeded(
                        f"the prompt would exceed the size limit of {max_output_chars} characters"
                    )
                chunks.append(chunk)
        except Exception:
            sys.settrace(previous)
            template.environment.handle_exception()
        finally:
            sys.settrace(previous)
        return "".join(chunks)
    except RenderError:
        raise
    except SecurityError as error:
        raise RenderError(f"the prompt broke the sandbox: {error}") from error
    except RecursionError as error:
        raise LimitExceeded("the prompt recursed too deeply") from error
    except MemoryError as error:
        raise LimitExceeded("the prompt needed too much memory") from error
    except TemplateError as error:
        raise RenderError(f"{type(error).__name__}: {error}") from error
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as error:
        raise RenderError(f"{type(error).__name__}: {error}") from error
