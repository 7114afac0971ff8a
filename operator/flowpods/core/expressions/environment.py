"""The jinja2 environment that renders Kestra's expressions: sandboxed, strict, bounded, printing as Kestra.

jinja2 does the evaluation; `syntax.translate` (a jinja2 preprocess step) turns Pebble's grammar into
jinja2's, and the globals, filters and tests are Kestra's. An undefined variable is an error naming it;
`??`, `???`, `is defined`, `is null` and `default` are the ways to accept one.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, Template, Undefined, pass_context
from jinja2.ext import Extension
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from flowpods.core.expressions import limits, syntax
from flowpods.core.expressions.filters import FILTERS
from flowpods.core.expressions.functions import FUNCTIONS
from flowpods.core.expressions.operators import OPERATORS, TESTS, KestraError
from flowpods.core.expressions.printing import to_text

__all__ = ["KestraUndefined", "environment", "render_template"]

MAX_RECURSIVE_RENDERS = 10  # render(): re-render until stable, at most this many times


class KestraUndefined(ChainableUndefined, StrictUndefined):
    """Undefined that chains (`a.b.c ?? x` works when `a` is missing) but fails when printed or used."""

    __slots__ = ()


class KestraSyntax(Extension):
    """Pebble's grammar, rewritten into jinja2's before lexing."""

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        return syntax.translate(source)


class KestraEnvironment(ImmutableSandboxedEnvironment):
    """Mapping keys win over methods, as in Kestra (`outputs.task.values` is the output named values);
    every call charges the time budget."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping):
            if attribute in obj:
                return obj[attribute]
            return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(argument, Undefined):  # `block[missing].child ?? x`: undefined, for ?? to catch
            return self.undefined(obj=obj, name=str(getattr(argument, "_undefined_name", None) or "?"))
        return super().getitem(obj, argument)

    def call(self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        limits.charge(0)
        return super().call(__context, __obj, *args, **kwargs)


def render_template(template: Template, context: Mapping[str, Any]) -> str:
    """Render with the output size checked as it is produced."""
    chunks: list[str] = []
    size = 0
    for chunk in template.generate(dict(context)):
        size += len(chunk)
        limits.check_size(size, "the rendered text")
        limits.charge(0)
        chunks.append(chunk)
    return "".join(chunks)


@pass_context
def _render(context: Context, template: Any, recursive: bool = True) -> Any:
    """render(): render a string that holds an expression, again until it no longer changes; in a map or a
    list, every string inside (the structure is kept)."""
    env = context.environment
    assert isinstance(env, KestraEnvironment)
    if isinstance(template, Mapping):
        return {key: _render(context, item, recursive) for key, item in template.items()}
    if isinstance(template, list | tuple):
        return [_render(context, item, recursive) for item in template]
    if not isinstance(template, str):
        return template
    text = template
    variables = context.get_all()
    for _ in range(MAX_RECURSIVE_RENDERS if recursive else 1):
        if "{{" not in text and "{%" not in text:
            return text
        with limits.nested():
            rendered = render_template(env.from_string(text), variables)
        if rendered == text:
            return text
        text = rendered
    if recursive and ("{{" in text or "{%" in text):
        raise KestraError(f"Too many rendering attempts: render() still changes after {MAX_RECURSIVE_RENDERS}")
    return text


@pass_context
def _render_once(context: Context, template: Any) -> Any:
    return _render(context, template, recursive=False)


@lru_cache(maxsize=1)
def environment() -> KestraEnvironment:
    env = KestraEnvironment(
        undefined=KestraUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=to_text,
        extensions=[KestraSyntax],
    )
    env.globals.clear()  # no lipsum(), cycler() or jinja2's exclusive range()
    env.globals.update(FUNCTIONS)
    env.globals.update(OPERATORS)
    env.globals.update(render=_render, renderOnce=_render_once)
    env.filters.update(FILTERS)
    env.tests.update(TESTS)
    env.tests.update(null=TESTS["_kx_null"], empty=TESTS["_kx_empty"], json=TESTS["_kx_json"], map=TESTS["_kx_map"])
    return env
