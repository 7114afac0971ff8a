"""Kestra's rules, each a small pure function of states and task settings.

The transitions and the drivers ask these questions; nothing here changes a status. The order below is
the order in which a task run meets them: an attempt ends (retry, warningOnRetry), a task run fails
(allowFailure, transmitFailed), task lists and fan-outs end (the sequence, the join), and the execution
ends (errors, finally).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from flowpods.core.model import Retry, Subflow, TaskBase
from flowpods.core.status import State


def failure_reason(reason: str | None, exit_code: int | None, timed_out: bool) -> str:
    """A failed attempt says why: the reason observed, else its exit code, marked `timeout:` when it timed out."""
    text = reason or (f"exit code {exit_code}" if exit_code is not None else "failed")
    if timed_out and not text.lower().startswith("timeout"):
        return f"timeout: {text}"
    return text


def retry_due(retry: Retry, attempt: int, first_start: datetime, failed_at: datetime, running: bool) -> bool:
    """retry: a failed attempt runs again while attempts remain, the execution runs, and maxDuration allows."""
    return (
        attempt < retry.maxAttempts
        and running
        and (retry.maxDuration is None or failed_at - first_start < retry.maxDuration)
    )


def success_state(task: TaskBase, attempt: int) -> State:
    """warningOnRetry: a task that succeeded only after a retry ends WARNING."""
    warn = task.retry is not None and task.retry.warningOnRetry and attempt > 1
    return State.WARNING if warn else State.SUCCESS


def failed_state(task: TaskBase, killed: bool = False) -> State:
    """allowFailure: a task allowed to fail ends WARNING instead of FAILED (a killed one stays KILLED)."""
    if killed:
        return State.KILLED
    return State.WARNING if task.allowFailure else State.FAILED


def transmits_failure(task: Subflow, child: State) -> bool:
    """transmitFailed: a Subflow fails when its child failed, unless it was told not to pass that on."""
    return child.failed and task.transmitFailed


def child_state(child: State) -> State:
    """A Subflow that does not fail ends WARNING when its child warned, else SUCCESS."""
    return State.WARNING if child == State.WARNING else State.SUCCESS


def sequence(states: Sequence[State]) -> State:
    """A task list runs while a task runs, fails as its first failure did (KILLED or FAILED), else warns if one did."""
    for state in states:
        if not state.terminal:
            return State.RUNNING
        if state.failed:
            return State.KILLED if state == State.KILLED else State.FAILED
    return State.WARNING if State.WARNING in states else State.SUCCESS


def continues(state: State) -> bool:
    """A task list goes on to its next task only after this one ended without failing."""
    return state.terminal and not state.failed


def may_branch(states: Iterable[State], limit: int) -> bool:
    """A fan-out starts another branch while none failed and fewer than its limit run (0: no limit)."""
    states = list(states)
    running = sum(1 for state in states if not state.terminal)
    return not any(state.failed for state in states) and not (limit and running >= limit)


def join(states: Iterable[State], complete: bool) -> State:
    """A fan-out ends KILLED if a branch was killed, FAILED if one failed, else once all ended (WARNING if one did)."""
    states = list(states)
    if any(not state.terminal for state in states):
        return State.RUNNING
    if State.KILLED in states:
        return State.KILLED
    if any(state.failed for state in states):
        return State.FAILED
    if not complete:
        return State.RUNNING
    return State.WARNING if State.WARNING in states else State.SUCCESS


def errors_due(main: State, has_errors: bool) -> bool:
    """errors: a flow's error handlers run when its main tasks failed."""
    return main.failed and has_errors


def outcome(main: State, closing: State) -> State:
    """finally: an execution ends as its main tasks failed, else FAILED if `finally` did, else WARNING if one warned."""
    if main.failed:
        return main
    if closing.failed:
        return State.FAILED
    if State.WARNING in (main, closing):
        return State.WARNING
    return State.SUCCESS
