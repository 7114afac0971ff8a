"""Deterministic identifiers and the W3C traceparent format.

Span and task-run ids are hashes of what the cluster stores (the Execution's uid, the task-run id, the
attempt number), so a restarted operator derives exactly the ids it derived before.
"""

from __future__ import annotations

import hashlib
import re

from pydantic import BaseModel

from flowpods.core.status import RunInfo

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


# --- the ids of one execution's spans and objects (the executor hands them out, span derivation reuses them) ---


def trace_id(run: RunInfo) -> str:
    """The execution's trace: its caller's (a traceparent it was started with), else one derived from its uid."""
    parent = parse_traceparent(run.parentTraceparent)
    return parent.trace_id if parent else trace_id_for(run.uid)


def sampled(run: RunInfo) -> bool:
    parent = parse_traceparent(run.parentTraceparent)
    return parent.sampled if parent else True


def run_span_id(run: RunInfo, generation: int = 0) -> str:
    """The RUN span; after the n-th restart, the RUN span of that restart (`generation` n)."""
    return span_id_for(run.uid, "run") if generation == 0 else span_id_for(run.uid, "run", generation)


def change_span_id(run: RunInfo, n: int) -> str:
    return span_id_for(run.uid, "change", n)


def taskrun_span_id(run: RunInfo, taskrun_id: str, generation: int = 0) -> str:
    """The EXECUTOR span of an executor-side task run (Subflow, Parallel, If, ...); a restart that reopened
    it n times gives it a new span (`generation` n)."""
    if generation == 0:
        return span_id_for(run.uid, "taskrun", taskrun_id)
    return span_id_for(run.uid, "taskrun", taskrun_id, generation)


def attempt_span_id(run: RunInfo, taskrun_id: str, attempt: int) -> str:
    """The TASKRUN span of one attempt: the worker's TRACEPARENT points at it."""
    return span_id_for(run.uid, "attempt", taskrun_id, attempt)


def traceparent_of(run: RunInfo, span_id: str) -> str:
    return TraceParent(trace_id=trace_id(run), span_id=span_id, sampled=sampled(run)).header()


def taskrun_id(
    run: RunInfo, task_id: str, parent_id: str | None, value: str | None, iteration: int | None = None
) -> str:
    parts = [run.uid, task_id, parent_id or "", value if value is not None else "\x00"]
    return short_id(*parts, *([f"#{iteration}"] if iteration is not None else []))


def dns_label(text: str, limit: int) -> str:
    """Text as (the start of) a DNS label: lower-case alphanumerics and dashes, at most `limit` long."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return cleaned[:limit].rstrip("-") or "x"


def child_name(run: RunInfo, taskrun_id: str, flow_id: str) -> str:
    """A Subflow's child execution: named from the task run, so that a retried create finds the same one."""
    return f"{dns_label(flow_id, 40)}-{short_id(run.uid, 'child', taskrun_id, length=8)}"
