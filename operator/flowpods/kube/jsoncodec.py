"""JSON on the operator's hot path: orjson, with the standard library for what orjson refuses.

A `py-spy --gil` profile of the throughput bench (docs/benchmarks.md, stop 11) put a tenth of the operator's
CPU in `json.loads` of the watch streams' events (every pod and Execution change, whole objects; read by
kube/watches.py), and more in encoding the status and the pods it sends. orjson decodes and encodes the same
documents several times faster. What it refuses (integers beyond 64 bits, keys that are not text, NaN) goes
to the standard library, so nothing that was accepted before is refused now. The API server never sends an
integer beyond 64 bits (it decodes numbers into int64 or float64), the one place where orjson's reading (a
float) would differ.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:  # NaN, Infinity: what the standard library reads and orjson does not
        return json.loads(bytes(data) if isinstance(data, memoryview) else data)


def dumps(value: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    """Compact JSON as UTF-8 bytes."""
    try:
        return orjson.dumps(value, default=default)
    except TypeError:  # integers beyond 64 bits, keys that are not text
        return json.dumps(value, separators=(",", ":"), default=default).encode()
