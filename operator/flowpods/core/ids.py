"""Deterministic identifiers and the W3C traceparent format.

Span and task-run ids are hashes of what the cluster stores (the Execution's uid, the task-run id, the
attempt number), so a restarted operator derives exactly the ids it derived before.
"""

from __future__ import annotations

import hashlib
import re

from pydantic import BaseModel

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")


class TraceParent(BaseModel):
    """A parsed W3C traceparent."""

    trace_id: str
    span_id: str
    sampled: bool = True

    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"


def parse_traceparent(value: str | None) -> TraceParent | None:
    """Parse a traceparent; anything malformed (or all-zero ids, or version ff) gives None: a new trace."""
    if not value or not isinstance(value, str):
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if not match:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or set(trace_id) == {"0"} or set(span_id) == {"0"}:
        return None
    return TraceParent(trace_id=trace_id, span_id=span_id, sampled=bool(int(flags, 16) & 1))


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).digest()


def trace_id_for(*parts: object) -> str:
    """A 128-bit trace id derived from the parts (never all zero)."""
    digest = _digest("trace", *parts)[:16]
    return digest.hex() if any(digest) else "0" * 31 + "1"


def span_id_for(*parts: object) -> str:
    """A 64-bit span id derived from the parts (never all zero)."""
    digest = _digest("span", *parts)[:8]
    return digest.hex() if any(digest) else "0" * 15 + "1"


def short_id(*parts: object, length: int = 10) -> str:
    """A short, lower-case, DNS-safe id derived from the parts (task-run ids, pod name suffixes)."""
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    number = int.from_bytes(_digest("id", *parts)[:12], "big")
    chars = []
    for _ in range(length):
        number, index = divmod(number, 36)
        chars.append(alphabet[index])
    return "".join(chars)
