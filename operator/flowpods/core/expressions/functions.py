"""Kestra's functions (`{{ name(args) }}`), and the ones flowpods refuses with a message naming them.

Functions that would be random in Kestra (`randomInt`, `uuid`) are deterministic here: seeded from the
execution, the task run, the attempt and the call's position, so that rendering an attempt again (after an
operator restart) gives the same task. `now()` is the time the engine passes in, never the clock.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import uuid as uuidlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import yaml
from jinja2 import pass_context
from jinja2.runtime import Context

from flowpods.core.expressions import dates
from flowpods.core.expressions.filters import _defined, _text, jq
from flowpods.core.expressions.operators import KestraError, inclusive_range
from flowpods.core.expressions.printing import ZonedDateTime, to_json
from flowpods.core.secrets import secret_marker

__all__ = ["ERROR_LOGS_KEY", "FUNCTIONS", "NOW_KEY", "Unsupported"]

NOW_KEY = "_kx_now"  # the context key holding the render time (a datetime)
ERROR_LOGS_KEY = "_kx_error_logs"  # the context key of errorLogs()'s entries (the failed task runs' errors), or of
# a function that returns them
SECRET_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,253}")


class Unsupported(KestraError):
    """A Kestra function that needs a service flowpods does not have."""


def from_json(value: Any) -> Any:
    value = _defined(value)
    if value is None:
        return None
    try:
        return json.loads(_text(value))
    except ValueError as exc:
        raise KestraError(f"invalid JSON: {exc}") from None


def from_yaml(value: Any) -> Any:
    try:
        return yaml.safe_load(_text(value))
    except yaml.YAMLError as exc:
        raise KestraError(f"invalid YAML: {exc}") from None


def _now(context: Context) -> datetime:
    moment = context.get(NOW_KEY)
    if not isinstance(moment, datetime):
        raise KestraError("now() is not available here: no render time was given")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@pass_context
def now(context: Context, timeZone: str | None = None, format: str | None = None) -> Any:
    moment = _now(context).astimezone(dates.zone(timeZone))
    if format:
        return dates.format_date(moment, format)
    fields = (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second, moment.microsecond)
    return ZonedDateTime(*fields, tzinfo=moment.tzinfo)


def _seed(context: Context, kind: str) -> random.Random:
    calls = context.eval_ctx.__dict__.setdefault("_kx_calls", {})
    calls[kind] = calls.get(kind, 0) + 1
    execution = context.get("execution") or {}
    taskrun = context.get("taskrun") or {}
    key = json.dumps(
        [kind, calls[kind], execution.get("id") if isinstance(execution, Mapping) else None,
         taskrun.get("id") if isinstance(taskrun, Mapping) else None,
         taskrun.get("attemptsCount") if isinstance(taskrun, Mapping) else None],
        default=str,
    )  # fmt: skip
    return random.Random(hashlib.sha256(key.encode()).digest())


@pass_context
def random_int(context: Context, lower: Any = None, upper: Any = None) -> int:
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (lower, upper)):
        raise KestraError(f"randomInt(lower, upper) needs two integers, got {lower!r}, {upper!r}")
    if lower > upper:
        raise KestraError(f"randomInt({lower}, {upper}): the lower bound must not be above the upper bound")
    if lower == upper:
        return int(lower)
    return _seed(context, "randomInt").randrange(lower, upper)


@pass_context
def uuid(context: Context) -> str:
    return str(uuidlib.UUID(int=_seed(context, "uuid").getrandbits(128), version=4))


def secret(name: Any) -> str:
    key = _text(name)
    if not SECRET_NAME.fullmatch(key):
        raise KestraError(f"invalid secret name '{key}' (letters, digits, '_', '-', '.')")
    return secret_marker(key)


@pass_context
def print_context(context: Context) -> str:
    return to_json({k: v for k, v in context.get_all().items() if not k.startswith("_kx") and not callable(v)})


@pass_context
def current_each_output(context: Context, outputs: Any) -> Any:
    """The outputs of a sibling task for the current ForEach value(s), innermost value last."""
    values = [p.get("taskrun", {}).get("value") for p in reversed(context.get("parents") or [])]
    values.append((context.get("taskrun") or {}).get("value"))
    current = _defined(outputs)
    for value in values:
        if isinstance(current, Mapping) and value in current:
            current = current[value]
    return current


@pass_context
def error_logs(context: Context) -> list[Any]:
    """Kestra's errorLogs(): the execution's ERROR entries. flowpods keeps no task logs in the executor, so the
    entries are the failed task runs' error messages (one per failed task run), with Kestra's field names."""
    entries = context.get(ERROR_LOGS_KEY)
    if callable(entries):  # the executor's context computes them only when asked
        entries = entries()
    return list(entries) if isinstance(entries, list) else []


def _max(*args: Any) -> Any:
    return max(args[0]) if len(args) == 1 else max(args)


def _min(*args: Any) -> Any:
    return min(args[0]) if len(args) == 1 else min(args)


def unsupported(name: str, why: str) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise Unsupported(f"{name}() is not supported by flowpods: {why} (see docs/flows.md)")

    return refuse


UNSUPPORTED = {
    "kv": "it reads Kestra's key-value store, which flowpods does not have",
    "read": "it reads Kestra's internal storage or namespace files, which flowpods does not have",
    "fileURI": "namespace files are not supported",
    "fileSize": "it reads Kestra's internal storage",
    "fileExists": "it reads Kestra's internal storage",
    "fileEmpty": "it reads Kestra's internal storage",
    "isFileEmpty": "it reads Kestra's internal storage",
    "fromIon": "Ion parsing needs internal storage files",
    "tasksWithState": "not implemented yet",
    "http": "rendering never makes network calls",
    "credential": "an Enterprise Edition feature",
    "appLink": "an Enterprise Edition feature",
    "encrypt": "it needs Kestra's encryption key",
    "decrypt": "it needs Kestra's encryption key",
    "randomPort": "a port free in the operator is not free in the pod",
    "subflowOutputs": "not implemented yet",
}

FUNCTIONS: dict[str, Any] = {
    "range": inclusive_range,
    "max": _max,
    "min": _min,
    "now": now,
    "errorLogs": error_logs,
    "fromJson": from_json,
    "json": from_json,
    "jsonDecode": from_json,
    "yaml": from_yaml,
    "randomInt": random_int,
    "uuid": uuid,
    "secret": secret,
    "printContext": print_context,
    "jq": jq,
    "currentEachOutput": current_each_output,
    **{name: unsupported(name, why) for name, why in UNSUPPORTED.items()},
}
