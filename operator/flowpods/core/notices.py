"""What an execution's Kubernetes Events say when it starts and when it ends: (type, reason, message)."""

from __future__ import annotations

from flowpods.core.clock import format_duration
from flowpods.core.status import ExecutionStatus, RunInfo, State

Notice = tuple[str, str, str]


def started(status: ExecutionStatus, run: RunInfo, flow_name: str) -> Notice:
    """Started, Queued behind the concurrency limit, or why it could not start."""
    if status.state.failed:
        return ("Warning", status.state.value.capitalize(), status.error or "failed")
    if status.state == State.QUEUED:
        return ("Normal", "Queued", f"waiting for a place: flow '{flow_name}' has a concurrency limit")
    return ("Normal", "Started", f"running flow {run.namespace}.{run.flowId} rev {run.flowRevision}")


def ended(name: str, status: ExecutionStatus) -> Notice:
    """How it ended and how long it took; a failure says why."""
    took = ""
    if status.startDate and status.endDate:
        took = f" in {format_duration((status.endDate - status.startDate).total_seconds())}"
    text = f"execution {name} ended {status.state.value}{took}"
    if status.state in (State.SUCCESS, State.WARNING):
        return ("Normal", status.state.value.capitalize(), text)
    return ("Warning", status.state.value.capitalize(), f"{text}: {status.error or ''}".rstrip(": "))
