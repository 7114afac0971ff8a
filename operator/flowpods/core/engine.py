"""The executor's entry points under their first name: `flowpods.core.executor` is where they live.

Kept so that code written against `engine.advance`, `engine.pending_actions`, the event and action
classes and the id helpers goes on working; new code imports `flowpods.core.executor` and `flowpods.core.ids`.
"""

from __future__ import annotations

from flowpods.core import executor, ids
from flowpods.core.executor import *  # noqa: F403
from flowpods.core.ids import attempt_span_id as attempt_span_id
from flowpods.core.ids import change_span_id as change_span_id
from flowpods.core.ids import child_name as child_name
from flowpods.core.ids import dns_label as dns_label
from flowpods.core.ids import run_span_id as run_span_id
from flowpods.core.ids import sampled as sampled
from flowpods.core.ids import taskrun_id as taskrun_id
from flowpods.core.ids import taskrun_span_id as taskrun_span_id
from flowpods.core.ids import trace_id as trace_id
from flowpods.core.ids import traceparent_of as traceparent_of
from flowpods.core.start import MAX_SUBFLOW_DEPTH as MAX_SUBFLOW_DEPTH

__all__ = [*executor.__all__, "MAX_SUBFLOW_DEPTH", "ids"]
