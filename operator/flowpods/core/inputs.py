"""Resolve and check an execution's inputs against the flow's declared inputs.

Values arrive as strings (CLI, forms, query strings) or as JSON values (API bodies, Execution specs);
both are coerced to the declared type, and every problem names the input.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

from flowpods.core.model import Flow, FlowError, Input, InputType

_DATETIME = TypeAdapter(datetime)
_DURATION = TypeAdapter(timedelta)
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def resolve_inputs(flow: Flow, given: dict[str, Any] | None) -> dict[str, Any]:
    """Return the inputs as JSON-ready values: declared ones coerced, defaults applied.

    Raises FlowError listing every missing, unknown or ill-typed input.
    """
    given = dict(given or {})
    problems: list[str] = []
    resolved: dict[str, Any] = {}
    declared = {item.id for item in flow.inputs}
    for unknown in sorted(set(given) - declared):
        problems.append(f"input '{unknown}' is not declared by flow {flow.namespace}.{flow.id}")
    for spec in flow.inputs:
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


def coerce(spec: Input, raw: Any) -> Any:
    """Coerce one value to the input's type, checking its validation rules."""
    return _coerce_as(spec.type, spec, raw)


def _coerce_as(kind: InputType, spec: Input, raw: Any) -> Any:
    if kind == InputType.STRING:
        value = raw if isinstance(raw, str) else json.dumps(raw) if isinstance(raw, dict | list) else str(raw)
        if spec.validator and not re.fullmatch(spec.validator, value):
            raise ValueError(f"'{value}' does not match the pattern {spec.validator}")
        return value
    if kind in (InputType.INT, InputType.FLOAT):
        try:
            if isinstance(raw, bool):
                raise ValueError
            number = int(raw) if kind == InputType.INT else float(raw)
            if kind == InputType.INT and isinstance(raw, float) and raw != int(raw):
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError(f"'{raw}' is not a valid {kind.value}") from None
        if spec.min is not None and number < spec.min:
            raise ValueError(f"{number} is below the minimum {spec.min:g}")
        if spec.max is not None and number > spec.max:
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
        if isinstance(raw, str):
            try:
                return json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON ({exc.msg} at position {exc.pos})") from None
        return raw
    if kind == InputType.DATETIME:
        try:
            return _DATETIME.validate_python(raw).isoformat()
        except ValidationError:
            raise ValueError(f"'{raw}' is not an ISO-8601 date and time") from None
    if kind == InputType.DURATION:
        try:
            return _iso_duration(_DURATION.validate_python(raw))
        except ValidationError:
            raise ValueError(f"'{raw}' is not an ISO-8601 duration such as PT30S") from None
    if kind == InputType.ENUM:
        value = str(raw)
        if value not in (spec.values or []):
            raise ValueError(f"'{value}' is not one of {', '.join(spec.values or [])}")
        return value
    if kind == InputType.ARRAY:
        items = raw
        if isinstance(raw, str):
            try:
                items = json.loads(raw)
            except json.JSONDecodeError:
                items = [part.strip() for part in raw.split(",") if part.strip()]
        if not isinstance(items, list):
            raise ValueError(f"'{raw}' is not an ARRAY")
        item_kind = spec.itemType or InputType.STRING
        return [_coerce_as(item_kind, spec, item) for item in items]
    raise ValueError(f"unsupported input type {kind}")  # pragma: no cover - the enum is exhaustive


def _iso_duration(value: timedelta) -> str:
    return str(TypeAdapter(timedelta).dump_python(value, mode="json"))
