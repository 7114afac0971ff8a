"""How each event changes the status: one transition per event type, found in an explicit table.

Transitions are level-based: an event that was already applied (a replay, a pod seen twice) changes
nothing. A transition records the facts the event brings; deciding what runs next is the drivers' job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowpods.core.executor import rules
from flowpods.core.executor.messages import (
    Admit,
    AttemptEvent,
    AttemptFinished,
    AttemptStarted,
    ChildFinished,
    EventBase,
    Kill,
    KillSubflow,
    Start,
    StopTask,
    Tick,
)
from flowpods.core.executor.step import Step
from flowpods.core.inputs import resolve_inputs
from flowpods.core.model import FlowError, Subflow
from flowpods.core.status import Attempt, State, TaskRun


def start(step: Step, event: Start) -> None:
    """Resolve the inputs, then run, or wait in the queue; invalid inputs fail the execution."""
    status = step.status
    if status.history:
        return  # already started: replays change nothing
    step.touched = True
    status.set_state(State.CREATED, step.run.createdAt)
    try:
        status.inputs = resolve_inputs(step.flow, event.inputs)
    except FlowError as exc:
        step.end_execution(State.FAILED, event.at, f"invalid inputs: {exc}")
        return
    status.set_state(State.QUEUED if event.queued else State.RUNNING, event.at)


def admit(step: Step, event: Admit) -> None:
    """A queued execution runs."""
    if step.status.state == State.QUEUED:
        step.touched = True
        step.status.set_state(State.RUNNING, event.at)


def attempt_started(step: Step, event: AttemptStarted) -> None:
    """The attempt's process started: its task run is RUNNING."""
    tr, attempt = _live_attempt(step, event)
    if tr is None or attempt is None or attempt.startedAt is not None:
        return
    step.touched = True
    attempt.startedAt = event.at
    _where(attempt, event)
    attempt.state = State.RUNNING
    tr.set_state(State.RUNNING, event.at)


def attempt_finished(step: Step, event: AttemptFinished) -> None:
    """The attempt ended: its task run succeeds, waits for a retry, or fails."""
    tr, attempt = _live_attempt(step, event)
    if tr is None or attempt is None:
        return
    step.touched = True
    attempt.startedAt = attempt.startedAt or event.startedAt or event.at
    _where(attempt, event)
    attempt.endedAt = event.at
    attempt.exitCode = event.exitCode
    attempt.closedIn = step.n
    attempt.spans = list(event.spans)
    step.finished.append(f"{tr.taskId}#{attempt.number}")
    if tr.state != State.RUNNING:
        tr.set_state(State.RUNNING, attempt.startedAt)
    task = step.flow.task(tr.taskId)
    if event.success:
        attempt.state = State.SUCCESS
        tr.outputs = event.outputs
        step.finish_taskrun(tr, rules.success_state(task, attempt.number), event.at)
        return
    attempt.state = State.FAILED
    attempt.reason = rules.failure_reason(event.reason, event.exitCode, event.timedOut)
    first_start = tr.attempts[0].startedAt or tr.attempts[0].createdAt
    running = step.status.state == State.RUNNING
    retry = task.retry
    if retry is not None and rules.retry_due(retry, attempt.number, first_start, event.at, running):
        tr.set_state(State.RETRYING, event.at)
        tr.retryAt = event.at + retry.delay_before(attempt.number + 1)
        return
    step.fail_taskrun(tr, task, attempt.reason, event.at)


def child_finished(step: Step, event: ChildFinished) -> None:
    """A Subflow's child execution ended: the Subflow ends with it (transmitFailed decides how)."""
    tr = step.status.taskrun(event.taskRunId)
    if tr is None or tr.state.terminal:
        return
    task = step.flow.task(tr.taskId)
    if not isinstance(task, Subflow):
        return
    step.touched = True
    tr.outputs = {"executionId": tr.child, "state": event.state.value, "outputs": event.outputs}
    if rules.transmits_failure(task, event.state):
        step.fail_taskrun(tr, task, f"subflow execution {tr.child} ended {event.state.value}", event.at)
    else:
        step.finish_taskrun(tr, rules.child_state(event.state), event.at)


def kill(step: Step, event: Kill) -> None:
    """Kill everything under way: stop the attempts' pods, kill the children, and end KILLED."""
    if step.status.state.terminal:
        return
    step.touched = True
    step.status.set_state(State.KILLING, event.at)
    for tr in step.status.taskRuns:
        if tr.state.terminal:
            continue
        for attempt in tr.attempts:
            if not attempt.state.terminal:
                attempt.state = State.KILLED
                attempt.endedAt = event.at
                attempt.reason = "killed"
                attempt.closedIn = step.n
                step.actions.append(StopTask(taskRunId=tr.id, attempt=attempt.number))
        if tr.child:
            step.actions.append(KillSubflow(taskRunId=tr.id, name=tr.child))
        tr.retryAt = None
        step.finish_taskrun(tr, State.KILLED, event.at)
    step.end_execution(State.KILLED, event.at, "killed")


def tick(step: Step, event: Tick) -> None:
    """Time passed: nothing to record (the drivers start the retries now due)."""


Transition = Callable[[Step, Any], None]

TRANSITIONS: dict[type[EventBase], Transition] = {
    Start: start,
    Admit: admit,
    AttemptStarted: attempt_started,
    AttemptFinished: attempt_finished,
    ChildFinished: child_finished,
    Kill: kill,
    Tick: tick,
}


def apply(step: Step, event: EventBase) -> None:
    """Apply one event through its transition; an event type without one is a programming error."""
    transition = TRANSITIONS.get(type(event))
    if transition is None:
        raise TypeError(f"the executor has no transition for {type(event).__name__} events")
    transition(step, event)


def _live_attempt(step: Step, event: AttemptEvent) -> tuple[TaskRun | None, Attempt | None]:
    """The task run and its current attempt, if the event is about that attempt and it has not ended."""
    tr = step.status.taskrun(event.taskRunId)
    if tr is None or tr.state.terminal or not tr.attempts:
        return tr, None
    attempt = tr.attempts[-1]
    if attempt.number != event.attempt or attempt.state.terminal:
        return tr, None
    return tr, attempt


def _where(attempt: Attempt, event: AttemptEvent) -> None:
    """Record where the attempt ran (the first observation of each fact wins)."""
    attempt.scheduledAt = attempt.scheduledAt or event.scheduledAt
    attempt.pod, attempt.node = event.pod or attempt.pod, event.node or attempt.node
