"""Pebble's operators with Kestra's semantics, called by the translated expressions (`_kx_*` globals).

Each one charges the rendering budget where it could grow without bound (ranges, loops, concatenation).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from jinja2 import Undefined

from flowpods.core.expressions.limits import LimitExceeded, charge, check_range, check_size
from flowpods.core.expressions.printing import to_text

__all__ = ["OPERATORS", "KestraError"]


class KestraError(ValueError):
    """An expression that Kestra would refuse at render time (wrong operand types, `?? raise`, ...)."""


def _missing(value: Any) -> bool:
    return value is None or isinstance(value, Undefined)


def coalesce(left: Any, right: Any) -> Any:
    """`a ?? b`: the first value that is defined and not null."""
    return right if _missing(left) else left


def undefined_coalesce(left: Any, right: Any) -> Any:
    """`a ??? b`: b only when a is undefined (a null a stays null)."""
    return right if isinstance(left, Undefined) else left


def coalesce_or_raise(left: Any) -> Any:
    """`a ?? raise`: an error when every alternative is undefined or null."""
    if _missing(left):
        raise KestraError("every alternative of '?? raise' is undefined or null")
    return left


def contains(container: Any, item: Any) -> bool:
    """`a contains b`: an item of a list, a key of a map, a substring; a list on the right needs all of them."""
    if isinstance(container, Undefined):
        str(container)  # raises the undefined error
    if container is None:
        return False
    if isinstance(item, list | tuple) and not isinstance(container, str):
        return all(contains(container, one) for one in item)
    if isinstance(container, str):
        return to_text(item) in container
    if isinstance(container, Mapping):
        return item in container
    if isinstance(container, Iterable):
        return item in list(container)
    raise KestraError(f"'contains' needs a list, a map or a string, not {type(container).__name__}")


def _number(value: Any, op: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        if isinstance(value, Undefined):
            str(value)
        raise KestraError(f"'{op}' needs numbers, got {to_text(value)!r} ({type(value).__name__})")
    return value


def _same_kind(a: Any, b: Any, op: Callable[[Any, Any], Any]) -> Any:
    """Decimal with float gives float (Java widens BigDecimal arithmetic the same way for doubles)."""
    if isinstance(a, Decimal) and isinstance(b, float):
        a = float(a)
    elif isinstance(b, Decimal) and isinstance(a, float):
        b = float(b)
    return op(a, b)


def add(left: Any, right: Any) -> Any:
    if isinstance(left, list) and isinstance(right, list):
        check_size(len(left) + len(right), "a list")
        return left + right
    if isinstance(left, str) or isinstance(right, str):
        return concat(left, right)
    return _same_kind(_number(left, "+"), _number(right, "+"), lambda a, b: a + b)


def multiply(left: Any, right: Any) -> Any:
    return _same_kind(_number(left, "*"), _number(right, "*"), lambda a, b: a * b)


def divide(left: Any, right: Any) -> Any:
    """Java's division: two integers give an integer rounded toward zero."""
    a, b = _same_kind(_number(left, "/"), _number(right, "/"), lambda x, y: (x, y))
    if b == 0 and not isinstance(a, float) and not isinstance(b, float):
        raise KestraError("division by zero")
    if isinstance(a, int) and isinstance(b, int):
        quotient = abs(a) // abs(b)
        return quotient if (a >= 0) == (b >= 0) else -quotient
    if b == 0:
        return float("inf") if a > 0 else float("-inf") if a < 0 else float("nan")
    return a / b


def concat(left: Any, right: Any) -> str:
    """`a ~ b`: both printed as `{{ }}` prints them."""
    text = to_text(left) + to_text(right)
    check_size(len(text))
    return text


def inclusive_range(start: Any, end: Any, step: Any = 1) -> list[int]:
    """Pebble's range(a, b[, step]) and `a..b`: both ends included, at most MAX_RANGE items."""
    try:
        a, b, s = int(start), int(end), int(step)
    except (TypeError, ValueError, OverflowError):
        raise KestraError(f"range needs integers, got {start!r}, {end!r}, {step!r}") from None
    if s == 0:
        raise KestraError("range step cannot be 0")
    count = max(0, (b - a) // s + 1)
    check_range(count)
    charge(0)
    return list(range(a, b + (1 if s > 0 else -1), s))


def loop_items(value: Any, targets: int = 1) -> Iterator[Any]:
    """What `{% for %}` walks: a map gives entries with key/value (pairs with two loop variables)."""
    if isinstance(value, Undefined):
        str(value)
    if value is None:
        return
    if isinstance(value, Mapping):
        items: Iterable[Any] = (
            ((k, v) for k, v in value.items()) if targets == 2 else ({"key": k, "value": v} for k, v in value.items())
        )
    elif isinstance(value, str):
        items = [value]
    elif isinstance(value, Iterable):
        items = value
    else:
        raise KestraError(f"cannot loop over {type(value).__name__} {to_text(value)!r}")
    for item in items:
        charge()
        yield item


def method(target: Any, name: str, *args: Any) -> Any:
    """The few Java methods Kestra users call on values (`.size()`, `.contains(x)`, `.startsWith(x)` ...)."""
    args = tuple(a for a in args if a is not None) if args == (None,) else args
    if isinstance(target, Undefined):
        str(target)
    text = target if isinstance(target, str) else None
    simple: dict[str, Any] = {
        "size": lambda: len(target),
        "length": lambda: len(target),
        "isEmpty": lambda: len(target) == 0,
        "toString": lambda: to_text(target),
        "keySet": lambda: list(target.keys()),
        "values": lambda: list(target.values()),
        "get": lambda: target[args[0]] if isinstance(target, Mapping) else target[int(args[0])],
        "contains": lambda: contains(target, args[0]),
        "containsKey": lambda: args[0] in target,
        "equals": lambda: target == args[0],
    }
    if text is not None:
        simple.update(
            toUpperCase=lambda: text.upper(),
            toLowerCase=lambda: text.lower(),
            trim=lambda: text.strip(),
            startsWith=lambda: text.startswith(to_text(args[0])),
            endsWith=lambda: text.endswith(to_text(args[0])),
            indexOf=lambda: text.find(to_text(args[0])),
            substring=lambda: text[int(args[0]) : (int(args[1]) if len(args) > 1 else None)],
            replace=lambda: text.replace(to_text(args[0]), to_text(args[1])),
            split=lambda: text.split(to_text(args[0])),
        )
    if name not in simple:
        raise KestraError(f"unknown method '{name}()' on {type(target).__name__}")
    try:
        return simple[name]()
    except (IndexError, KeyError, TypeError, AttributeError) as exc:
        raise KestraError(f"'{name}()' on {to_text(target)!r}: {exc}") from None


def is_json(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


OPERATORS: dict[str, Any] = {
    "_kx_coalesce": coalesce,
    "_kx_undefined_coalesce": undefined_coalesce,
    "_kx_coalesce_or_raise": coalesce_or_raise,
    "_kx_contains": contains,
    "_kx_add": add,
    "_kx_mul": multiply,
    "_kx_div": divide,
    "_kx_concat": concat,
    "_kx_range": inclusive_range,
    "_kx_iter": loop_items,
    "_kx_method": method,
}

TESTS: dict[str, Any] = {
    "_kx_null": _missing,
    "_kx_empty": lambda v: _missing(v) or (hasattr(v, "__len__") and not isinstance(v, Undefined) and len(v) == 0),
    "_kx_json": is_json,
    "_kx_map": lambda v: isinstance(v, Mapping),
    "_kx_iterable": lambda v: isinstance(v, list | tuple | Mapping),
}

__all__ += ["TESTS", "LimitExceeded"]
