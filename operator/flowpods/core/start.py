"""Whether and how an execution starts: decided the same way by the operator, the HTTP API and the local runner.

An execution cannot start when it nests too deep in subflows or its flow is missing, invalid or disabled.
When it can, the flow's concurrency limit decides: run now, wait in the queue, or be refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from flowpods.core.model import Flow, FlowError
from flowpods.core.status import State

MAX_SUBFLOW_DEPTH = 10  # a flow that calls itself must end, not fill the cluster


class Refusal(StrEnum):
    """Why an execution cannot start (the API answers 404 for a missing flow, 409 for the others)."""

    TOO_DEEP = "too-deep"
    NOT_FOUND = "not-found"
    INVALID = "invalid"
    DISABLED = "disabled"


@dataclass(frozen=True)
class CannotStart:
    refusal: Refusal
    message: str


def start_check(flow_name: str, flow: Flow | FlowError | None, namespace: str | None = None,
                depth: int = 0) -> CannotStart | None:  # fmt: skip
    """Why an execution of `flow_name` cannot start, or None: too deep in subflows, its flow missing, invalid or
    disabled. `flow` is the loaded flow, the error that loading raised, or None when there is no such flow."""
    if depth > MAX_SUBFLOW_DEPTH:
        return CannotStart(Refusal.TOO_DEEP, f"subflows nest deeper than {MAX_SUBFLOW_DEPTH}")
    if flow is None:
        where = f" in namespace {namespace}" if namespace else ""
        return CannotStart(Refusal.NOT_FOUND, f"flow '{flow_name}' not found{where}")
    if isinstance(flow, FlowError):
        return CannotStart(Refusal.INVALID, f"flow '{flow_name}' is invalid: {flow}")
    if flow.disabled:
        return CannotStart(Refusal.DISABLED, f"flow '{flow_name}' is disabled")
    return None


@dataclass(frozen=True)
class Admission:
    """How a startable execution starts under its flow's concurrency limit."""

    queued: bool = False
    refused: State | None = None  # CANCELLED or FAILED: the execution ends at once, with `reason`
    reason: str | None = None


def admission(flow_name: str, flow: Flow, has_place: bool) -> Admission:
    """With a free place (or no limit) it runs; otherwise QUEUE waits for one, CANCEL and FAIL refuse it."""
    concurrency = flow.concurrency
    if concurrency is None or has_place:
        return Admission()
    if concurrency.behavior == "QUEUE":
        return Admission(queued=True)
    reason = f"flow '{flow_name}' already runs {concurrency.limit} executions (its concurrency limit)"
    return Admission(refused=State.CANCELLED if concurrency.behavior == "CANCEL" else State.FAILED, reason=reason)
