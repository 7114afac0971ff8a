"""What to export, and what the export watermark becomes: the pure half of "every span exactly once".

`status.exported` is the confirmed watermark: the number of the last change whose spans the exporter
accepted. Spans belong to the change that completed them (`spans.derive_spans`), ids are deterministic,
so the spans of the changes above the watermark can be derived again at any time, by any process.

The shell (the operator, the local runner) follows one protocol:

1. commit the new status with the watermark at most at what was confirmed (the changes are durable first);
2. `plan(...)`: derive the spans above the watermark and send them (the operator: from a background thread,
   one plan in flight per execution, see `export_queue`);
3. only when the exporter confirmed them, store the watermark past them: carried by the next commit of the
   status (whose resourceVersion makes sure it moves from the value read), or with a write of its own that
   moves it only from the value read (`watermark_patch`).

A crash, a refused call or a failed export anywhere in between leaves the stored watermark where it
was, so the next reconcile (this process or the next one) sends those spans again with the same ids:
nothing is lost. A process that had an export confirmed but has not stored the watermark yet remembers
the confirmed number and passes it as `confirmed`: it stores the watermark later without sending those
spans again. So the only way a span is sent twice is a process that dies after the exporter received it
and before the watermark past it was stored; its successor sends the spans above the stored watermark once
more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowpods.core.model import Flow
from flowpods.core.records import SpanRecord
from flowpods.core.spans import derive_spans
from flowpods.core.status import ExecutionStatus, RunInfo


@dataclass(frozen=True)
class ExportPlan:
    """The spans of changes `since` < n <= `upto`, and the watermark to store once they were confirmed.

    `stored` is the watermark the status holds (at most `since`: more was confirmed but not stored yet)."""

    stored: int
    since: int
    upto: int
    spans: tuple[SpanRecord, ...]


def last_change(status: ExecutionStatus) -> int:
    return status.last_change


def pending(status: ExecutionStatus) -> bool:
    """Committed changes whose spans were not confirmed yet."""
    return status.exported < last_change(status)


def plan(run: RunInfo, flow: Flow | None, status: ExecutionStatus, confirmed: int = 0) -> ExportPlan | None:
    """What to send now, given the stored status and its watermark; None when nothing is pending.

    `confirmed`: a watermark this process saw confirmed but could not store; the spans up to it are not
    sent again, the plan only stores it (with the spans of newer changes). Every span a change completed is
    in the plan, sampled or not (the exporter drops unsampled ones), so a plan exists for each pending change
    even if it has no span to send: the watermark must still move.
    """
    stored, upto = status.exported, last_change(status)
    if stored >= upto:
        return None
    since = min(max(stored, confirmed), upto)
    fresh = tuple(record for closed_in, record in derive_spans(run, flow, status) if since < closed_in <= upto)
    return ExportPlan(stored=stored, since=since, upto=upto, spans=fresh)


def advance(export: ExportPlan, confirmed: bool) -> int:
    """The confirmed watermark after an export attempt: past the plan only when the exporter confirmed it."""
    return export.upto if confirmed else export.since


def watermark_patch(stored: int, confirmed: int) -> list[dict[str, Any]]:
    """A JSON patch of the status that stores the confirmed watermark, and fails (422) unless the stored one
    is still the one that was read: a stale write can never move the watermark, back or forth."""
    return [
        {"op": "test", "path": "/status/exported", "value": stored},
        {"op": "replace", "path": "/status/exported", "value": confirmed},
    ]
