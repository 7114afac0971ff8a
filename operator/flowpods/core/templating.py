"""Kestra's `{{ ... }}` expressions: render a value of a flow with Kestra's language and printing rules.

An undefined variable is an error that names the expression: a flow that silently renders an empty
string where an output was expected is the bug users hate most. Every rendering is bounded (loop items,
output size, time) and a limit exceeded is a RenderError naming it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import Template, TemplateError

from flowpods.core.expressions import limits
from flowpods.core.expressions.environment import KestraEnvironment, environment, render_template
from flowpods.core.expressions.functions import ERROR_LOGS_KEY, NOW_KEY
from flowpods.core.expressions.operators import KestraError
from flowpods.core.secrets import SECRET_MARKER, secret_marker
from flowpods.core.truth import is_truthy

__all__ = [
    "ERROR_LOGS_KEY",
    "NOW_KEY",
    "SECRET_MARKER",
    "RenderError",
    "is_truthy",
    "render",
    "render_string",
    "secret_marker",
]


class RenderError(ValueError):
    """A template could not be rendered; the message names the expression and why."""

    def __init__(self, expression: str, reason: str):
        self.expression = expression
        self.reason = reason
        super().__init__(f"cannot render '{expression}': {reason}")


def _environment() -> KestraEnvironment:
    """The environment (also used by Kestra's conformance measure to compile templates)."""
    return environment()


@lru_cache(maxsize=2048)
def _compile(source: str) -> Template:
    return environment().from_string(source)


def render_string(source: str, context: dict[str, Any]) -> str:
    """Render one string; strings without `{{` or `{%` are returned as they are."""
    if "{{" not in source and "{%" not in source and "{#" not in source:
        return source
    try:
        with limits.budget():
            return render_template(_compile(source), context)
    except TemplateError as exc:
        raise RenderError(source, _reason(exc)) from None
    except limits.LimitExceeded as exc:
        raise RenderError(source, f"limit exceeded: {exc}") from None
    except KestraError as exc:
        raise RenderError(source, str(exc)) from None
    except RecursionError:
        raise RenderError(source, "nested too deeply") from None
    except (TypeError, ValueError, KeyError, AttributeError, ZeroDivisionError, OverflowError, IndexError) as exc:
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
