"""How Kestra prints a value into a rendered string (Pebble's output writer with Kestra's JSON mapper).

Maps and lists print as compact JSON, booleans as `true`/`false`, null as nothing, dates in ISO form with
milliseconds and `Z`, numbers as Java prints them. One definition for `{{ }}` output, `~`, `join`, `string`.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

__all__ = ["iso_datetime", "jsonable", "to_json", "to_text"]


def iso_datetime(value: datetime) -> str:
    """A UTC date as Kestra prints an instant, to the millisecond: `2026-11-25T18:40:13.310Z` (a naive date
    is taken as UTC); a date at another offset, or a ZonedDateTime, as Java's toString prints it:
    `2013-09-08T16:19+02:00`."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if isinstance(value, ZonedDateTime) or value.utcoffset():
        return java_zoned_text(value)
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


class ZonedDateTime(datetime):
    """A date Kestra holds as a java.time.ZonedDateTime (what now() returns): printed with its full
    precision, as Java's toString does (`2024-07-09T06:17:01.171193Z`)."""


def java_zoned_text(value: datetime) -> str:
    text = value.strftime("%Y-%m-%dT%H:%M")
    if value.second or value.microsecond:
        text += f":{value.second:02d}"
    if value.microsecond:
        text += f".{value.microsecond // 1000:03d}" if value.microsecond % 1000 == 0 else f".{value.microsecond:06d}"
    offset = value.utcoffset() or timedelta(0)
    zone = getattr(value.tzinfo, "key", None)
    if not offset and not zone:
        return text + "Z"
    minutes = int(offset.total_seconds() // 60)
    hours, mins = divmod(abs(minutes), 60)
    return text + f"{'+' if minutes >= 0 else '-'}{hours:02d}:{mins:02d}" + (f"[{zone}]" if zone else "")


def java_double(value: float) -> str:
    """Java's Double.toString: `1.0`, `1.123`, `1.0E10`, `NaN`, `Infinity`."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0 or 1e-3 <= abs(value) < 1e7:
        text = repr(value)
        return text if ("." in text or "e" in text) else text + ".0"
    mantissa, _, exponent = f"{value!r}".partition("e") if "e" in repr(value) else (f"{value:.17g}", "", "")
    if not exponent:
        digits = f"{value:e}"
        mantissa, _, exponent = digits.partition("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
    if "." not in mantissa:
        mantissa += ".0"
    return f"{mantissa}E{int(exponent)}"


def jsonable(value: Any) -> Any:
    """The value with dates, decimals, tuples and bytes replaced by what Kestra's JSON mapper writes."""
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, Mapping):
        return {str(k) if not isinstance(k, str) else k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.isoformat() if aware.utcoffset() else iso_datetime(aware)  # Jackson: ISO_OFFSET_DATE_TIME
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return _iso_duration(value)
    if isinstance(value, Decimal):
        return float(value) if value != value.to_integral_value() else int(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)


def _iso_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    text = "PT" + (f"{int(hours)}H" if hours else "") + (f"{int(minutes)}M" if minutes else "")
    if secs or text == "PT":
        text += (f"{secs:g}" if secs != int(secs) else str(int(secs))) + "S"
    return ("-" if seconds < 0 else "") + text


def to_json(value: Any) -> str:
    """Compact JSON, non-ASCII kept as is (Jackson's default)."""
    return json.dumps(jsonable(value), separators=(",", ":"), ensure_ascii=False, allow_nan=True)


def to_text(value: Any) -> str:
    """The text `{{ value }}` prints."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return java_double(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return iso_datetime(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        return to_json(value)
    if isinstance(value, date | time | timedelta):
        return str(jsonable(value))
    return str(value)
