"""The executor's entry points under their first name: `flowpods.core.executor` is where they live.

Kept so that code written against `engine.advance`, `engine.pending_actions` and the event and action
classes goes on working; new code imports from `flowpods.core.executor`.
"""

from __future__ import annotations

from flowpods.core.executor import (
    Action,
    Admit,
    AttemptFinished,
    AttemptStarted,
    ChildFinished,
    Decision,
    Event,
    Kill,
    KillSubflow,
    RunTask,
    Start,
    StartSubflow,
    StopTask,
    Tick,
    advance,
    failed_start,
    pending_actions,
    render_context,
)
from flowpods.core.ids import (
    attempt_span_id,
    change_span_id,
    child_name,
    dns_label,
    run_span_id,
    sampled,
    taskrun_id,
    taskrun_span_id,
    trace_id,
    traceparent_of,
)
from flowpods.core.start import MAX_SUBFLOW_DEPTH

__all__ = [
    "MAX_SUBFLOW_DEPTH",
    "Action",
    "Admit",
    "AttemptFinished",
    "AttemptStarted",
    "ChildFinished",
    "Decision",
    "Event",
    "Kill",
    "KillSubflow",
    "RunTask",
    "Start",
    "StartSubflow",
    "StopTask",
    "Tick",
    "advance",
    "attempt_span_id",
    "change_span_id",
    "child_name",
    "dns_label",
    "failed_start",
    "pending_actions",
    "render_context",
    "run_span_id",
    "sampled",
    "taskrun_id",
    "taskrun_span_id",
    "trace_id",
    "traceparent_of",
]
