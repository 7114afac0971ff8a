"""Resolve and check an execution's inputs against the flow's declared inputs.

Values arrive as strings (CLI, forms, query strings) or as JSON values (API bodies, Execution specs);
both are coerced to the declared type, and every problem names the input.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import TypeAdapter, ValidationError

from flowpods.core.bounds import ShapeError, check_json_depth, check_shape
from flowpods.core.model import Flow, FlowError, Input, InputType
from flowpods.core.patterns import PatternError, fullmatch
from flowpods.core.templating import RenderError, is_truthy, render_string

_DATETIME = TypeAdapter(datetime)
_DATE = TypeAdapter(date)
_TIME = TypeAdapter(time)
_DURATION = TypeAdapter(timedelta)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def resolve_inputs(flow: Flow, given: dict[str, Any] | None) -> dict[str, Any]:
    """Return the inputs as JSON-ready values: declared ones coerced, defaults applied.

    Raises FlowError listing every missing, unknown or ill-typed input.
    """
    return resolve_declared(flow.inputs, given, f"flow {flow.namespace}.{flow.id}")


def resolve_declared(specs: Sequence[Input], given: dict[str, Any] | None, owner: str) -> dict[str, Any]:
    """`resolve_inputs` for any list of declared inputs (a flow's, a Pause's onResume), `owner` naming it."""
    given = dict(given or {})
    try:
        check_shape(given, "the inputs")
    except ShapeError as exc:
        raise FlowError([str(exc)]) from None
    problems: list[str] = []
    resolved: dict[str, Any] = {}
    declared = {item.id for item in specs}
    for unknown in sorted(set(given) - declared):
        problems.append(f"input '{unknown}' is not declared by {owner}")
    for spec in specs:
        try:
            asked = _is_asked(spec, resolved)
        except RenderError as exc:
            problems.append(f"input '{spec.id}': dependsOn condition: {exc}")
            continue
        if not asked:
            resolved[spec.id] = None
            continue
        if spec.id in given and given[spec.id] is not None:
            raw = given[spec.id]
        elif spec.defaults is not None:
            raw = spec.defaults
        elif spec.required:
            problems.append(f"input '{spec.id}' is required ({spec.type.value})")
            continue
        else:
            resolved[spec.id] = None
            continue
        try:
            resolved[spec.id] = coerce(spec, raw)
        except ValueError as exc:
            problems.append(f"input '{spec.id}': {exc}")
    if problems:
        raise FlowError(problems)
    return resolved


def _is_asked(spec: Input, known: dict[str, Any]) -> bool:
    """Kestra's dependsOn: an input whose condition is false is not asked for (and not required)."""
    if spec.dependsOn is None or not spec.dependsOn.condition:
        return True
    return is_truthy(render_string(spec.dependsOn.condition, {"inputs": nested(known)}))


def nested(inputs: dict[str, Any]) -> dict[str, Any]:
    """The inputs as templates read them: an input `a.b` is also `inputs.a.b`, as in Kestra."""
    result = dict(inputs)
    for key, value in inputs.items():
        if "." not in key:
            continue
        *path, last = key.split(".")
        node = result
        for part in path:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node.setdefault(last, value)
    return result


def coerce(spec: Input, raw: Any) -> Any:
    """Coerce one value to the input's type, checking its validation rules."""
    return _coerce_as(spec.type, spec, raw)


def _coerce_as(kind: InputType, spec: Input, raw: Any) -> Any:
    if kind in (InputType.STRING, InputType.SECRET):
        value = raw if isinstance(raw, str) else json.dumps(raw) if isinstance(raw, dict | list) else str(raw)
        try:
            if spec.validator and not fullmatch(spec.validator, value):
                raise ValueError(f"'{_excerpt(value)}' does not match the pattern {spec.validator}")
        except PatternError as exc:
            raise ValueError(str(exc)) from None
        return value
    if kind == InputType.EMAIL:
        value = str(raw).strip()
        if not _EMAIL.match(value):
            raise ValueError(f"'{value}' is not an email address")
        return value
    if kind == InputType.URI:
        value = str(raw).strip()
        if not urlsplit(value).scheme:
            raise ValueError(f"'{value}' is not a URI (it needs a scheme, such as https://)")
        return value
    if kind == InputType.YAML:
        if isinstance(raw, str):
            try:
                return yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise ValueError(f"not valid YAML ({str(exc).splitlines()[0]})") from None
        return raw
    if kind in (InputType.INT, InputType.FLOAT):
        try:
            if isinstance(raw, bool):
                raise ValueError
            number = int(raw) if kind == InputType.INT else float(raw)
            if kind == InputType.INT and isinstance(raw, float) and raw != int(raw):
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError(f"'{raw}' is not a valid {kind.value}") from None
        if isinstance(spec.min, int | float) and number < spec.min:
            raise ValueError(f"{number} is below the minimum {spec.min:g}")
        if isinstance(spec.max, int | float) and number > spec.max:
            raise ValueError(f"{number} is above the maximum {spec.max:g}")
        return number
    if kind == InputType.BOOLEAN:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise ValueError(f"'{raw}' is not a BOOLEAN (true or false)")
    if kind == InputType.JSON:
        try:
            if isinstance(raw, str):
                check_json_depth(raw, "the value")
                try:
                    return json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"not valid JSON ({exc.msg} at position {exc.pos})") from None
            check_shape(raw, "the value")
        except ShapeError as exc:
            raise ValueError(str(exc)) from None
        return raw
    if kind in (InputType.DATETIME, InputType.DATE, InputType.TIME):
        return _time_value(kind, spec, raw)
    if kind == InputType.DURATION:
        try:
            duration = _DURATION.validate_python(raw.strip().upper() if isinstance(raw, str) else raw)
        except ValidationError:
            raise ValueError(f"'{raw}' is not an ISO-8601 duration such as PT30S") from None
        if isinstance(spec.min, timedelta) and duration < spec.min:
            raise ValueError(f"{_iso_duration(duration)} is shorter than the minimum {_iso_duration(spec.min)}")
        if isinstance(spec.max, timedelta) and duration > spec.max:
            raise ValueError(f"{_iso_duration(duration)} is longer than the maximum {_iso_duration(spec.max)}")
        return _iso_duration(duration)
    if kind == InputType.ENUM:
        value = str(raw)
        allowed = spec.values or []
        if value not in allowed and not spec.allowCustomValue:
            raise ValueError(f"'{value}' is not one of {', '.join(allowed)}")
        return value
    if kind == InputType.MULTISELECT:
        chosen = _as_list(raw)
        allowed = spec.values or spec.options or []
        wrong = [str(item) for item in chosen if str(item) not in allowed]
        if wrong and not spec.allowCustomValue:
            raise ValueError(f"{', '.join(repr(w) for w in wrong)} not among {', '.join(allowed)}")
        return [str(item) for item in chosen]
    if kind == InputType.ARRAY:
        items = _as_list(raw)
        item_kind = spec.itemType or InputType.STRING
        return [_coerce_as(item_kind, spec, item) for item in items]
    raise ValueError(f"unsupported input type {kind}")  # pragma: no cover - the enum is exhaustive


def _excerpt(value: str, limit: int = 80) -> str:
    """A value quoted in an error: long ones cut, so a message never carries megabytes."""
    return value if len(value) <= limit else value[:limit] + f"... ({len(value)} characters)"


def _as_list(raw: Any) -> list[Any]:
    items = raw
    if isinstance(raw, str):
        try:
            check_json_depth(raw, "the value")
            items = json.loads(raw)
        except ShapeError as exc:
            raise ValueError(str(exc)) from None
        except json.JSONDecodeError:
            items = [part.strip() for part in raw.split(",") if part.strip()]
    if not isinstance(items, list):
        raise ValueError(f"'{raw}' is not a list")
    return items


def _time_value(kind: InputType, spec: Input, raw: Any) -> str:
    """A DATETIME, DATE or TIME in ISO format, checked against `after` and `before` (both exclusive)."""
    adapter: TypeAdapter[Any] = _DATETIME if kind == InputType.DATETIME else _DATE if kind == InputType.DATE else _TIME
    example = {InputType.DATETIME: "2026-01-02T03:04:05Z", InputType.DATE: "2026-01-02", InputType.TIME: "03:04:05"}
    try:
        value = adapter.validate_python(raw)
    except ValidationError:
        raise ValueError(f"'{raw}' is not an ISO-8601 {kind.value.lower()} such as {example[kind]}") from None
    for bound, name in ((spec.after, "after"), (spec.before, "before")):
        if bound is None:
            continue
        limit = adapter.validate_python(bound)
        if (name == "after" and not _utc(value) > _utc(limit)) or (name == "before" and not _utc(value) < _utc(limit)):
            raise ValueError(f"{value.isoformat()} is not {name} {limit.isoformat()}")
    return str(value.isoformat())


def _utc(value: Any) -> Any:
    """A date-time without a zone is read as UTC, so that it compares with one that has a zone."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _iso_duration(value: timedelta) -> str:
    return str(TypeAdapter(timedelta).dump_python(value, mode="json"))
