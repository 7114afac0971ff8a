"""Kestra-style `{{ ... }}` expressions, rendered with jinja2's sandbox.

An undefined variable is an error that names the expression: a flow that silently renders an empty
string where an output was expected is the bug users hate most.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from flowpods.core.truth import is_truthy

__all__ = ["RenderError", "is_truthy", "render", "render_string"]


class RenderError(ValueError):
    """A template could not be rendered; the message names the expression and why."""

    def __init__(self, expression: str, reason: str):
        self.expression = expression
        self.reason = reason
        super().__init__(f"cannot render '{expression}': {reason}")


def _to_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _from_json(value: str) -> Any:
    return json.loads(value)


class _KestraEnvironment(ImmutableSandboxedEnvironment):
    """Mapping keys win over methods, as in Kestra: `outputs.task.values` is the output named values."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = _KestraEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.filters.update(json=_to_json, toJson=_to_json, fromJson=_from_json, jsonDecode=_from_json)
    return env


@lru_cache(maxsize=2048)
def _compile(source: str) -> Template:
    return _environment().from_string(source)


def render_string(source: str, context: dict[str, Any]) -> str:
    """Render one string; strings without `{{` or `{%` are returned as they are."""
    if "{{" not in source and "{%" not in source:
        return source
    try:
        return str(_compile(source).render(context))
    except TemplateError as exc:
        raise RenderError(source, _reason(exc)) from None
    except (TypeError, ValueError, KeyError, AttributeError, ZeroDivisionError) as exc:
        raise RenderError(source, f"{type(exc).__name__}: {exc}") from None


def render(value: Any, context: dict[str, Any]) -> Any:
    """Render every string inside lists and mappings (keys included), leaving other values unchanged."""
    if isinstance(value, str):
        return render_string(value, context)
    if isinstance(value, list):
        return [render(item, context) for item in value]
    if isinstance(value, dict):
        return {render(key, context): render(item, context) for key, item in value.items()}
    return value


def _reason(exc: TemplateError) -> str:
    message = getattr(exc, "message", None) or str(exc)
    message = message.replace("'dict object'", "the mapping").replace("'list object'", "the list")
    if type(exc).__name__ == "UndefinedError":
        return f"undefined variable: {message}"
    return message
