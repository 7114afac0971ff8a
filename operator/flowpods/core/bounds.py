"""Bounds on the shape of untrusted documents: how deep they nest and how many values they hold.

Flows, inputs, webhook bodies and Execution specs come from users. Python's parsers, pydantic, jinja2 and
`json.dumps` all recurse, so a document nested a thousand levels deep raises `RecursionError` wherever it
is touched next, and a YAML file of aliases expands to billions of values when it is walked. These checks
walk iteratively, stop at the limit, and name the problem and where it is, so a bad document is refused
with a clear message before anything recursive reads it.
"""

from __future__ import annotations

import re
from typing import Any

MAX_DEPTH = 128
"""Levels of mappings and lists a document may nest: a flow of 60 nested `If`s, or JSON inputs 128 deep."""

MAX_VALUES = 200_000
"""Values (mappings, lists and scalars, aliases counted each time they are used) a document may hold."""


# a whole string (brackets inside it do not count) or one bracket
_JSON_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)

MAX_EXECUTIONS_PER_ROOT = 1000
"""Subflow executions one root execution may start (a Parallel of self-Subflows doubles at each level);
the operator's FLOWPODS_MAX_EXECUTIONS_PER_ROOT, and the bound of a local run."""


class ShapeError(ValueError):
    """A document nests too deeply or holds too many values; the message says which limit and where."""


def check_shape(data: Any, what: str, *, max_depth: int = MAX_DEPTH, max_values: int = MAX_VALUES) -> None:
    """Raise ShapeError when `data` nests deeper than `max_depth` or holds more than `max_values` values.

    The walk is iterative and stops at the first limit crossed, so it costs at most `max_values` steps
    whatever the input (a YAML alias bomb included).
    """
    stack: list[tuple[Any, int, str]] = [(data, 0, "")]
    seen = 0
    while stack:
        value, depth, path = stack.pop()
        seen += 1
        if seen > max_values:
            raise ShapeError(f"{what} holds more than {max_values} values; the limit is {max_values}")
        if isinstance(value, dict | list):
            if depth >= max_depth:
                where = f" (at {_short(path)})" if path else ""
                raise ShapeError(f"{what} is nested more than {max_depth} levels deep{where}; the limit is {max_depth}")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                step = f"[{key}]" if isinstance(value, list) else (f".{key}" if path else str(key))
                stack.append((item, depth + 1, path + step if len(path) < 400 else path))


def json_depth(text: str | bytes, limit: int = MAX_DEPTH) -> int:
    """How deep a JSON text nests, counted without parsing it (stops counting past `limit`).

    Brackets inside strings do not count. Used before `json.loads`, whose C scanner recurses.
    """
    data = text.encode() if isinstance(text, str) else text
    depth = deepest = 0
    for token in _JSON_TOKENS.finditer(data):
        char = token.group()
        if char in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif char in (b"]", b"}"):
            depth -= 1
    return deepest


def check_json_depth(text: str | bytes, what: str, max_depth: int = MAX_DEPTH) -> None:
    """Raise ShapeError when a JSON text nests deeper than `max_depth`."""
    if json_depth(text, max_depth) > max_depth:
        raise ShapeError(f"{what} is nested more than {max_depth} levels deep; the limit is {max_depth}")


def _short(path: str) -> str:
    return path if len(path) <= 80 else path[:40] + "..." + path[-37:]
