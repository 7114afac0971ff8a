"""Kestra's date filters: Java DateTimeFormatter patterns, Kestra's named formats, parsing, units.

Kestra formats with `java.time.format.DateTimeFormatter` patterns (`yyyy-MM-dd'T'HH:mm:ss.SSSXXX`), so the
patterns are interpreted here letter by letter rather than mapped onto strftime, which differs (`%f` has no
millisecond form, `%z` no colon form).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["add", "format_date", "parse_date", "timestamp", "zone"]

NAMED_FORMATS = {
    "iso": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX",
    "iso_sec": "yyyy-MM-dd'T'HH:mm:ssXXX",
    "sql": "yyyy-MM-dd HH:mm:ss.SSSSSS",
    "sql_seconds": "yyyy-MM-dd HH:mm:ss",
    "iso_date_time": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX",
    "iso_zoned_date_time": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX'['VV']'",
    "iso_offset_date_time": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX",
    "iso_local_date_time": "yyyy-MM-dd'T'HH:mm:ss.SSSSSS",
    "iso_local_date": "yyyy-MM-dd",
    "iso_date": "yyyy-MM-dd",
    "iso_local_time": "HH:mm:ss.SSSSSS",
    "iso_time": "HH:mm:ss.SSSSSSXXX",
    "iso_instant": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSX",
    "iso_week_date": "YYYY-'W'ww-e",
    "iso_ordinal_date": "yyyy-DDD",
    "basic_iso_date": "yyyyMMdd",
    "rfc_1123_date_time": "EEE, dd MMM yyyy HH:mm:ss 'GMT'",
}
DEFAULT_FORMAT = "iso"

UNITS = {
    "NANOS": timedelta(microseconds=0.001),
    "MICROS": timedelta(microseconds=1),
    "MILLIS": timedelta(milliseconds=1),
    "SECONDS": timedelta(seconds=1),
    "MINUTES": timedelta(minutes=1),
    "HOURS": timedelta(hours=1),
    "HALF_DAYS": timedelta(hours=12),
    "DAYS": timedelta(days=1),
    "WEEKS": timedelta(weeks=1),
}
CALENDAR_UNITS = {"MONTHS": 1, "YEARS": 12, "DECADES": 120, "CENTURIES": 1200, "MILLENNIA": 12000}

PATTERN_TOKEN = re.compile(r"'(?:[^']|'')*'|([A-Za-z])\1*|.", re.S)
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]  # fmt: skip
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


class DateError(ValueError):
    pass


def zone(name: str | None) -> tzinfo:
    if not name:
        return UTC
    if name in ("UTC", "Z", "GMT"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DateError(f"unknown time zone '{name}'") from None


def _offset(value: datetime, colon: bool, z_for_zero: bool) -> str:
    offset = value.utcoffset() or timedelta(0)
    if z_for_zero and not offset:
        return "Z"
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}{':' if colon else ''}{mins:02d}"


_NUMBERS: dict[str, Callable[[datetime], int]] = {
    "d": lambda v: v.day,
    "D": lambda v: v.timetuple().tm_yday,
    "H": lambda v: v.hour,
    "h": lambda v: (v.hour % 12) or 12,
    "k": lambda v: v.hour or 24,
    "K": lambda v: v.hour % 12,
    "m": lambda v: v.minute,
    "s": lambda v: v.second,
    "w": lambda v: v.isocalendar()[1],
}
"""Java pattern letters that print one number, zero-padded to the letter's count."""


def _field(letter: str, count: int, value: datetime) -> str:
    if letter in "yu":
        return f"{value.year % 100:02d}" if count == 2 else f"{value.year:0{count}d}"
    if letter == "Y":
        year = value.isocalendar()[0]
        return f"{year % 100:02d}" if count == 2 else f"{year:0{count}d}"
    if letter in "ML":
        if count >= 4:
            return MONTHS[value.month - 1]
        if count == 3:
            return MONTHS[value.month - 1][:3]
        return f"{value.month:0{count}d}"
    if letter in _NUMBERS:
        return f"{_NUMBERS[letter](value):0{count}d}"
    if letter == "S":
        return f"{value.microsecond:06d}000"[:count].ljust(count, "0")
    if letter == "n":
        return str(value.microsecond * 1000)
    if letter in "E":
        name = DAYS[value.weekday()]
        return name if count >= 4 else name[:3]
    if letter in "ec":
        return str((value.weekday() + 1) % 7 + 1) if count <= 2 else _field("E", count, value)
    if letter == "a":
        return "AM" if value.hour < 12 else "PM"
    if letter == "X":
        return _offset(value, colon=count >= 3, z_for_zero=True)[: 3 if count == 1 else None]
    if letter == "x":
        return _offset(value, colon=count >= 3, z_for_zero=False)[: 3 if count == 1 else None]
    if letter == "Z":
        return _offset(value, colon=count >= 5, z_for_zero=False) if count < 4 else "GMT" + _offset(value, True, False)
    if letter in "Vz":
        tz = value.tzinfo
        key = getattr(tz, "key", None)
        if letter == "V" or count >= 4:
            return key or ("UTC" if value.utcoffset() == timedelta(0) else _offset(value, True, False))
        return value.tzname() or "UTC"
    if letter == "G":
        return "AD"
    raise DateError(f"unsupported date pattern letter '{letter}'")


def format_date(value: datetime, pattern: str) -> str:
    """Format with a Java DateTimeFormatter pattern or one of Kestra's named formats."""
    pattern = NAMED_FORMATS.get(pattern.lower(), pattern) if pattern else NAMED_FORMATS[DEFAULT_FORMAT]
    out = []
    for m in PATTERN_TOKEN.finditer(pattern):
        text = m.group(0)
        if text.startswith("'"):
            out.append(text[1:-1].replace("''", "'") if text != "''" else "'")
        elif m.group(1):
            out.append(_field(text[0], len(text), value))
        else:
            out.append(text)
    return "".join(out)


def _strptime_pattern(pattern: str) -> str:
    mapping = {"yyyy": "%Y", "uuuu": "%Y", "yy": "%y", "MMMM": "%B", "MMM": "%b", "MM": "%m", "M": "%m", "dd": "%d",
               "d": "%d", "HH": "%H", "H": "%H", "hh": "%I", "h": "%I", "mm": "%M", "m": "%M", "ss": "%S", "s": "%S",
               "a": "%p", "EEEE": "%A", "EEE": "%a", "XXX": "%z", "XX": "%z", "X": "%z", "Z": "%z", "xxx": "%z",
               "DDD": "%j"}  # fmt: skip
    out = []
    for m in PATTERN_TOKEN.finditer(NAMED_FORMATS.get(pattern.lower(), pattern)):
        text = m.group(0)
        if text.startswith("'"):
            out.append(text[1:-1].replace("''", "'").replace("%", "%%") if text != "''" else "'")
        elif m.group(1):
            if text[0] == "S":
                out.append("%f")
            elif text in mapping:
                out.append(mapping[text])
            else:
                raise DateError(f"unsupported date pattern '{text}' in existingFormat")
        else:
            out.append(text.replace("%", "%%"))
    return "".join(out)


def parse_date(value: Any, existing_format: str | None = None, time_zone: str | None = None) -> datetime:
    """A datetime from a datetime, a date, an ISO string, a string in `existing_format`, or epoch seconds."""
    tz = zone(time_zone)
    result: datetime
    if isinstance(value, datetime):
        result = value
    elif isinstance(value, date):
        result = datetime(value.year, value.month, value.day)
    elif isinstance(value, bool):
        raise DateError(f"cannot read a date from {value!r}")
    elif isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, UTC).astimezone(tz)
        except (OverflowError, OSError, ValueError):
            raise DateError(f"timestamp {value} is out of range") from None
    elif isinstance(value, str):
        try:
            if existing_format:
                result = datetime.strptime(value, _strptime_pattern(existing_format))
                if "'GMT'" in NAMED_FORMATS.get(existing_format.lower(), existing_format):
                    result = result.replace(tzinfo=UTC)
            else:
                from dateutil import parser as dateutil_parser  # on first use: ~9 ms of every start

                result = dateutil_parser.isoparse(value)
        except (ValueError, OverflowError):
            raise DateError(
                f"cannot read '{value}' as a date" + (f" in format '{existing_format}'" if existing_format else "")
            ) from None
    else:
        raise DateError(f"cannot read a date from a {type(value).__name__}")
    if result.tzinfo is None:
        result = result.replace(tzinfo=tz)
    return result


def add(value: datetime, amount: int, unit: str) -> datetime:
    from dateutil.relativedelta import relativedelta  # on first use: ~9 ms of every start

    unit = unit.upper()
    try:
        if unit in CALENDAR_UNITS:
            moved: datetime = value + relativedelta(months=amount * CALENDAR_UNITS[unit])
            return moved
        if unit in UNITS:
            return value + UNITS[unit] * amount
    except (OverflowError, ValueError):
        raise DateError(f"date out of range after adding {amount} {unit}") from None
    raise DateError(f"unknown unit '{unit}' (one of {', '.join([*UNITS, *CALENDAR_UNITS])})")


def timestamp(value: datetime, per_second: int) -> int:
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * per_second + delta.microseconds * per_second // 1_000_000
