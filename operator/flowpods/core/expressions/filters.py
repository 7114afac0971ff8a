"""Kestra's filters (`{{ value | name(args) }}`), named and behaving as Kestra's expressions reference says."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import yaml
from jinja2 import Undefined

from flowpods.core.expressions import dates
from flowpods.core.expressions.limits import check_size
from flowpods.core.expressions.operators import KestraError
from flowpods.core.expressions.printing import jsonable, to_json, to_text
from flowpods.core.shellquote import shellquote

__all__ = ["FILTERS", "JavaFloat", "JavaLong", "to_ion", "to_yaml"]


class JavaFloat(float):
    """A number Kestra holds as java.lang.Float (what `number` infers for a decimal string)."""


class JavaLong(int):
    """A number Kestra holds as java.lang.Long."""


class JavaBigInteger(int):
    """A number Kestra holds as java.math.BigInteger."""


def _defined(value: Any) -> Any:
    if isinstance(value, Undefined):
        str(value)  # raises the undefined error naming the variable
    return value


def _text(value: Any) -> str:
    return to_text(_defined(value))


# -- JSON, Ion, YAML ----------------------------------------------------------------------------------


def to_json_filter(value: Any) -> str:
    return to_json(_defined(value))


def _json_input(value: Any) -> Any:
    """What jq reads: a JSON string is parsed first (Kestra's jq takes task outputs that are JSON text)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return jsonable(value)


def jq(value: Any, expression: str) -> list[Any]:
    """Kestra's jq filter: every result of the program, as a list."""
    import jq as jqlib  # type: ignore[import-not-found,unused-ignore]  # on first use, as re2 and dateutil

    try:
        program = jqlib.compile(expression)
    except ValueError as exc:
        raise KestraError(f"invalid jq expression '{expression}': {exc}") from None
    try:
        return list(program.input_value(_json_input(_defined(value))).all())
    except ValueError as exc:
        raise KestraError(f"jq expression '{expression}' failed: {exc}") from None


_ION_SYMBOL = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_ION_KEYWORDS = {"null", "true", "false", "nan"}


def to_ion(value: Any) -> str:
    """Amazon Ion text, as Kestra's toIon writes it (maps with symbol keys, strings double-quoted)."""
    value = _defined(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value!r}e0" if "e" not in repr(value) else repr(value)
    if isinstance(value, Decimal):
        return str(value) if "." in str(value) else f"{value}."
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        parts = []
        for k, v in value.items():
            key = str(k)
            symbol = _ION_SYMBOL.fullmatch(key) and key not in _ION_KEYWORDS
            shown = key if symbol else "'" + key.replace("'", "\\'") + "'"
            parts.append(f"{shown}:{to_ion(v)}")
        return "{" + ",".join(parts) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(to_ion(v) for v in value) + "]"
    if isinstance(value, datetime):
        return f'ZonedDateTime::"{jsonable(value)}"'  # as Kestra's Ion mapper annotates a date
    return to_ion(jsonable(value))


class _IndentedDumper(yaml.SafeDumper):  # type: ignore[misc,unused-ignore]
    """Lists indented under their key, as Kestra's YAML mapper writes them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def to_yaml(value: Any) -> str:
    """Kestra's `yaml` filter: a value as YAML text (a scalar on one line, a top-level list indented)."""
    data = jsonable(_defined(value))
    if not isinstance(data, dict | list):
        text = yaml.dump(data, Dumper=_IndentedDumper, allow_unicode=True, default_flow_style=False)
        return str(text).removesuffix("...\n").rstrip("\n") + "\n" if data is not None else "null\n"
    text = str(yaml.dump(data, Dumper=_IndentedDumper, allow_unicode=True, default_flow_style=False, sort_keys=False))
    if isinstance(data, list) and data:
        text = "".join(" " + line for line in text.splitlines(keepends=True))
    return text


# -- numbers ------------------------------------------------------------------------------------------


def number(value: Any, kind: str | None = None) -> Any:
    text = _text(value).strip()
    try:
        if kind is None:
            if re.fullmatch(r"[+-]?\d+", text):
                parsed = int(text)
                return parsed if -(2**31) <= parsed < 2**31 else JavaLong(parsed)
            return JavaFloat(float(text))
        kind = kind.upper()
        if kind == "INT":
            return int(text)
        if kind == "LONG":
            return JavaLong(int(text))
        if kind == "FLOAT":
            return JavaFloat(float(text))
        if kind == "DOUBLE":
            return float(text)
        if kind == "BIGDECIMAL":
            return Decimal(text)
        if kind == "BIGINTEGER":
            return JavaBigInteger(int(text))
    except (ValueError, InvalidOperation):
        raise KestraError(f"'{text}' is not a number") from None
    raise KestraError(f"unknown number type '{kind}' (INT, FLOAT, LONG, DOUBLE, BIGDECIMAL, BIGINTEGER)")


def number_format(value: Any, pattern: str) -> str:
    """java.text.DecimalFormat for the usual patterns: `#.##`, `0.00`, `#,##0.0#`, `00`."""
    value = _defined(value)
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise KestraError(f"numberFormat needs a number, got {to_text(value)!r}") from None
    if not amount.is_finite():
        return "NaN" if amount.is_nan() else ("-∞" if amount < 0 else "∞")
    suffix = ""
    if pattern.endswith("%"):
        pattern, suffix, amount = pattern[:-1], "%", amount * 100
    integer_part, _, fraction_part = pattern.partition(".")
    grouping = "," in integer_part
    group_size = len(integer_part) - integer_part.rfind(",") - 1 if grouping else 0
    min_int = integer_part.count("0")
    min_frac, max_frac = fraction_part.count("0"), len(fraction_part.replace(",", ""))
    rounded = amount.quantize(Decimal(1).scaleb(-max_frac), rounding=ROUND_HALF_EVEN)
    sign = "-" if rounded < 0 else ""
    whole, _, frac = f"{abs(rounded):f}".partition(".")
    whole = whole.lstrip("0").rjust(min_int, "0")
    frac = frac.rstrip("0").ljust(min_frac, "0") if max_frac else ""
    if grouping and group_size > 0:
        groups: list[str] = []
        while len(whole) > group_size:
            groups.insert(0, whole[-group_size:])
            whole = whole[:-group_size]
        whole = ",".join([whole, *groups]) if whole else ",".join(groups)
    return sign + whole + ("." + frac if frac else "") + suffix


def abs_filter(value: Any) -> Any:
    value = _defined(value)
    if isinstance(value, str):
        value = number(value)
    return abs(value)


JAVA_CLASSES = [
    (bool, "java.lang.Boolean"),
    (JavaLong, "java.lang.Long"),
    (JavaBigInteger, "java.math.BigInteger"),
    (JavaFloat, "java.lang.Float"),
    (int, "java.lang.Integer"),
    (float, "java.lang.Double"),
    (Decimal, "java.math.BigDecimal"),
    (str, "java.lang.String"),
    (list, "java.util.ArrayList"),
    (tuple, "java.util.ArrayList"),
    (Mapping, "java.util.LinkedHashMap"),
]


def class_name(value: Any) -> str | None:
    value = _defined(value)
    if value is None:
        return None
    plain_int = isinstance(value, int) and not isinstance(value, bool | JavaLong | JavaBigInteger)
    if plain_int and not -(2**31) <= value < 2**31:
        return "java.lang.Long"
    for kind, name in JAVA_CLASSES:
        if isinstance(value, kind):
            return name
    if isinstance(value, datetime):
        return "java.time.ZonedDateTime"
    return type(value).__name__


# -- collections --------------------------------------------------------------------------------------


def chunk(value: Any, size: int) -> list[list[Any]]:
    items = list(_defined(value))
    if int(size) <= 0:
        raise KestraError("chunk size must be positive")
    return [items[i : i + int(size)] for i in range(0, len(items), int(size))]


def distinct(value: Any) -> list[Any]:
    out: list[Any] = []
    for item in _defined(value):
        if item not in out:
            out.append(item)
    return out


def first(value: Any) -> Any:
    value = _defined(value)
    if isinstance(value, Mapping):
        value = list(value.values())
    return value[0] if value else None


def last(value: Any) -> Any:
    value = _defined(value)
    if isinstance(value, Mapping):
        value = list(value.values())
    return value[-1] if value else None


def length(value: Any) -> int:
    value = _defined(value)
    return 0 if value is None else len(value) if hasattr(value, "__len__") else len(list(value))


def join(value: Any, separator: str = "") -> str:
    text = separator.join(to_text(item) for item in _defined(value))
    check_size(len(text))
    return text


def _regex_error(exc: Exception) -> str:
    detail = exc.args[0] if exc.args else exc
    return detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)


def split(value: Any, delimiter: str, limit: int = 0) -> list[str]:
    """Java's String.split: the delimiter is a regex (RE2: linear time, no backreferences or lookaround);
    limit as Java's (0 drops trailing empty strings)."""
    import re2  # type: ignore[import-not-found,import-untyped,unused-ignore]  # on first use: ~5 ms a start

    text, limit = _text(value), int(limit)
    try:
        parts: list[str] = re2.split(delimiter, text, maxsplit=max(0, limit - 1) if limit > 0 else 0)
    except re2.error as exc:
        raise KestraError(f"invalid split pattern '{delimiter}': {_regex_error(exc)}") from None
    if limit == 0:
        while parts and parts[-1] == "":
            parts.pop()
    return parts


def merge(value: Any, other: Any) -> Any:
    value, other = _defined(value), _defined(other)
    if isinstance(value, Mapping):
        if not isinstance(other, Mapping):
            raise KestraError("merge of a map needs a map")
        return {**value, **other}
    return [*value, *(other.values() if isinstance(other, Mapping) else other)]


def sort(value: Any) -> list[Any]:
    try:
        return sorted(_defined(value))
    except TypeError:
        raise KestraError("sort needs values that compare (all numbers or all strings)") from None


def rsort(value: Any) -> list[Any]:
    return list(reversed(sort(value)))


def reverse(value: Any) -> Any:
    value = _defined(value)
    return value[::-1] if isinstance(value, str) else list(reversed(list(value)))


def slice_filter(value: Any, start: int = 0, end: int | None = None) -> Any:
    value = _defined(value)
    size = len(value)
    stop = size if end is None else int(end)
    if not 0 <= int(start) <= stop <= size:
        raise KestraError(f"slice({start}, {end}) is outside 0..{size}")
    return value[int(start) : stop]


def keys(value: Any) -> list[Any]:
    value = _defined(value)
    if isinstance(value, Mapping):
        return list(value.keys())
    return list(range(len(value)))


def values(value: Any) -> list[Any]:
    value = _defined(value)
    if isinstance(value, Mapping):
        return list(value.values())
    raise KestraError("values needs a map")


def flatten(value: Any) -> list[Any]:
    """A list of lists as one list (Kestra's FlattenFilterTest): nested lists are spliced in, depth first."""
    out: list[Any] = []

    def walk(node: Any) -> None:
        for item in node:
            if isinstance(item, list | tuple):
                walk(item)
            else:
                out.append(item)

    value = _defined(value)
    if not isinstance(value, list | tuple):
        raise KestraError("flatten needs a list")
    walk(value)
    return out


# -- strings ------------------------------------------------------------------------------------------


def abbreviate(value: Any, width: int) -> str:
    text, width = _text(value), int(width)
    if len(text) <= width:
        return text
    if width < 4:
        raise KestraError("abbreviate needs a length of at least 4")
    return text[: width - 3] + "..."


def default(value: Any, fallback: Any = "") -> Any:
    """The fallback for an undefined, null or empty value (Pebble's default)."""
    if isinstance(value, Undefined) or value is None:
        return fallback
    if isinstance(value, str | list | tuple | Mapping) and len(value) == 0:
        return fallback
    return value


def capitalize(value: Any) -> str:
    text = _text(value)
    return text[:1].upper() + text[1:]


def title(value: Any) -> str:
    return re.sub(r"(^|\s)(\S)", lambda m: m.group(1) + m.group(2).upper(), _text(value))


def replace(value: Any, pairs: Mapping[str, Any], regexp: bool = False) -> str:
    import re2  # type: ignore[import-not-found,import-untyped,unused-ignore]  # on first use: ~5 ms a start

    text = _text(value)
    for search, substitute in _defined(pairs).items():
        if regexp:
            try:
                text = re2.sub(str(search), re.sub(r"\$(\d)", r"\\\1", to_text(substitute)), text)
            except re2.error as exc:
                raise KestraError(f"invalid replace pattern '{search}': {_regex_error(exc)}") from None
        else:
            text = text.replace(str(search), to_text(substitute))
        check_size(len(text))
    return text


def escape_char(value: Any, kind: str = "single") -> str:
    text = _text(value)
    if kind == "single":
        return text.replace("\\", "\\\\").replace("'", "\\'")
    if kind == "double":
        return text.replace("\\", "\\\\").replace('"', '\\"')
    if kind == "shell":
        return text.replace("'", "'\\''")
    raise KestraError(f"escapeChar type must be single, double or shell, not '{kind}'")


def slugify(value: Any) -> str:
    text = unicodedata.normalize("NFKD", _text(value)).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def substring_before(value: Any, separator: str) -> str:
    text = _text(value)
    return text.split(separator, 1)[0] if separator else ""


def substring_after(value: Any, separator: str) -> str:
    text = _text(value)
    return text.split(separator, 1)[1] if separator in text else ""


def substring_before_last(value: Any, separator: str) -> str:
    text = _text(value)
    return text.rsplit(separator, 1)[0] if separator and separator in text else text


def substring_after_last(value: Any, separator: str) -> str:
    text = _text(value)
    return text.rsplit(separator, 1)[1] if separator and separator in text else ""


def base64_decode(value: Any) -> str:
    try:
        return base64.b64decode(_text(value), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise KestraError(f"'{_text(value)}' is not valid base64") from None


def _digest(algorithm: str) -> Any:
    return lambda value: hashlib.new(algorithm, _text(value).encode()).hexdigest()


def urlencode(value: Any) -> str:
    return quote_plus(_text(value), safe="*")


def string(value: Any) -> str:
    return _text(value)


def _lines(value: Any) -> tuple[list[str], str]:
    text = "" if value is None else _text(value)
    separator = next((sep for sep in ("\r\n", "\n", "\r") if sep in text), "\n")
    return text.split(separator), separator


def indent(value: Any, amount: int, prefix: str = " ") -> str:
    """Every line but the first indented by `amount` times `prefix` (Kestra's indent)."""
    lines, separator = _lines(_defined(value))
    if lines == [""]:
        return ""
    pad = prefix * int(amount)
    return separator.join([lines[0], *[pad + line for line in lines[1:]]])


def nindent(value: Any, amount: int, prefix: str = " ") -> str:
    """A line break, then every line indented (Helm's nindent); the text's own line break is kept."""
    lines, separator = _lines(_defined(value))
    if lines == [""]:
        return ""
    pad = prefix * int(amount)
    return separator + separator.join(pad + line for line in lines)


def trim(value: Any) -> str:
    return _text(value).strip()


# -- dates --------------------------------------------------------------------------------------------


def date(
    value: Any,
    format: str | None = None,
    existingFormat: str | None = None,
    timeZone: str | None = None,
    locale: str | None = None,
) -> str:
    moment = dates.parse_date(_defined(value), existingFormat, timeZone)
    return dates.format_date(moment.astimezone(dates.zone(timeZone)) if timeZone else moment, format or "iso")


def date_add(
    value: Any,
    amount: int,
    unit: str,
    format: str | None = None,
    existingFormat: str | None = None,
    timeZone: str | None = None,
    locale: str | None = None,
) -> str:
    moment = dates.add(dates.parse_date(_defined(value), existingFormat, timeZone), int(amount), unit)
    return dates.format_date(moment.astimezone(dates.zone(timeZone)) if timeZone else moment, format or "iso")


def _timestamp(per_second: int) -> Any:
    def convert(value: Any, existingFormat: str | None = None, timeZone: str | None = None) -> int:
        return dates.timestamp(dates.parse_date(_defined(value), existingFormat, timeZone), per_second)

    return convert


FILTERS: dict[str, Any] = {
    "toJson": to_json_filter,
    "json": to_json_filter,
    "toIon": to_ion,
    "jq": jq,
    "yaml": to_yaml,
    "fromJson": lambda v: json.loads(_text(v)),
    "jsonDecode": lambda v: json.loads(_text(v)),
    "abs": abs_filter,
    "number": number,
    "numberFormat": number_format,
    "className": class_name,
    "chunk": chunk,
    "distinct": distinct,
    "uniq": distinct,
    "first": first,
    "last": last,
    "length": length,
    "join": join,
    "split": split,
    "merge": merge,
    "sort": sort,
    "rsort": rsort,
    "reverse": reverse,
    "slice": slice_filter,
    "keys": keys,
    "values": values,
    "flatten": flatten,
    "abbreviate": abbreviate,
    "default": default,
    "lower": lambda v: _text(v).lower(),
    "upper": lambda v: _text(v).upper(),
    "title": title,
    "capitalize": capitalize,
    "replace": replace,
    "trim": trim,
    "startsWith": lambda v, prefix: _text(v).startswith(to_text(prefix)),
    "endsWith": lambda v, suffix: _text(v).endswith(to_text(suffix)),
    "slugify": slugify,
    "substringBefore": substring_before,
    "substringAfter": substring_after,
    "substringBeforeLast": substring_before_last,
    "substringAfterLast": substring_after_last,
    "base64encode": lambda v: base64.b64encode(_text(v).encode()).decode(),
    "base64decode": base64_decode,
    "sha1": _digest("sha1"),
    "sha256": _digest("sha256"),
    "sha512": _digest("sha512"),
    "md5": _digest("md5"),
    "urlencode": urlencode,
    "urldecode": lambda v: unquote_plus(_text(v)),
    "string": string,
    "escapeChar": escape_char,
    "sh": shellquote,
    "shellquote": shellquote,
    "indent": indent,
    "nindent": nindent,
    "date": date,
    "dateAdd": date_add,
    "timestamp": _timestamp(1),
    "timestampMilli": _timestamp(1_000),
    "timestampMicro": _timestamp(1_000_000),
    "timestampNano": _timestamp(1_000_000_000),
}
