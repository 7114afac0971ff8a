"""How each event changes the status: one transition per event type, found in an explicit table.

Transitions are level-based: an event that was already applied (a replay, a pod seen twice) changes
nothing. A transition records the facts the event brings; deciding what runs next is the drivers' job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowpods.core import controls, ids
from flowpods.core.executor import rules
from flowpods.core.executor.messages import (
    Admit,
    AttemptEvent,
    AttemptFinished,
    AttemptStarted,
    ChildFinished,
    EventBase,
    Kill,
    Restart,
    Resume,
    Start,
    StepReported,
    Tick,
)
from flowpods.core.executor.step import ACTIVE, Step
from flowpods.core.inputs import resolve_inputs
from flowpods.core.model import FlowError, Pause, Subflow, WorkingDirectory
from flowpods.core.spans import derive_spans
from flowpods.core.status import Attempt, FrozenSpan, State, TaskRun
from flowpods.core.workdir import steps_of


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
    for tr in event.seed:  # a replay starts with the task runs before the one it replays from
        step.adopt(tr.model_copy(deep=True))


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
    task = step.flow.task(tr.taskId)
    if isinstance(task, WorkingDirectory):
        _workdir_pod_ended(step, task, tr, attempt, event)
        return
    if tr.state != State.RUNNING:
        tr.set_state(State.RUNNING, attempt.startedAt)
    if event.success:
        attempt.state = State.SUCCESS
        tr.outputs = event.outputs
        step.finish_taskrun(tr, rules.success_state(step.flow.retry_of(task), attempt.number), event.at)
        return
    attempt.state = State.FAILED
    attempt.reason = rules.failure_reason(event.reason, event.exitCode, event.timedOut)
    first_start = tr.attempts[0].startedAt or tr.attempts[0].createdAt
    running = step.status.state in ACTIVE
    retry = step.flow.retry_of(task)
    if retry is not None and rules.retry_due(retry, attempt.number, first_start, event.at, running):
        tr.set_state(State.RETRYING, event.at)
        tr.retryAt = event.at + retry.delay_before(attempt.number + 1)
        return
    step.fail_taskrun(tr, task, attempt.reason, event.at)


def step_reported(step: Step, event: StepReported) -> None:
    """A WorkingDirectory's pod started or ended one of its steps: the step's task run is created (once) and
    its attempt, in that pod, starts or ends as a worker's would."""
    tr, attempt = _live_attempt(step, event)
    if tr is None or attempt is None:
        return
    task = step.flow.task(tr.taskId)
    steps = steps_of(task) if isinstance(task, WorkingDirectory) else []
    if event.step >= len(steps):
        return
    if attempt.startedAt is None:
        step.touched = True
        attempt.startedAt, attempt.state = event.startedAt, State.RUNNING
        _where(attempt, event)
    child = steps[event.step]
    child_tr = step.find(child, tr, tr.value)
    if child_tr is None:
        child_tr = step.create_taskrun(child, tr, tr.value)
        child_tr.attempts.append(Attempt(number=1, createdAt=event.startedAt))
        step.created.append(f"{child.id}#1")
    where = {"taskRunId": child_tr.id, "attempt": 1, "pod": event.pod, "node": event.node}
    attempt_started(step, AttemptStarted(at=event.startedAt, **where))
    if event.finished is not None:
        attempt_finished(step, event.finished.model_copy(update=where))


def _workdir_pod_ended(
    step: Step, task: WorkingDirectory, tr: TaskRun, attempt: Attempt, event: AttemptFinished
) -> None:
    """The WorkingDirectory's pod ended. A step it did not report ended (the pod deleted, out of time or
    memory, its image unavailable) fails with the pod's reason; the steps after a failed one never ran."""
    attempt.state = State.SUCCESS if event.success else State.FAILED
    reason = None if event.success else rules.failure_reason(event.reason, event.exitCode, event.timedOut)
    attempt.reason = reason
    for child in steps_of(task):
        child_tr = step.find(child, tr, tr.value)
        if child_tr is not None and child_tr.state.terminal:
            if rules.continues(child_tr.state):
                continue
            return
        if child_tr is None:
            child_tr = step.create_taskrun(child, tr, tr.value)
            child_tr.attempts.append(Attempt(number=1, createdAt=attempt.startedAt or event.at))
            step.created.append(f"{child.id}#1")
        attempt_finished(step, AttemptFinished(
            at=event.at, taskRunId=child_tr.id, attempt=1, success=False, pod=event.pod, node=event.node,
            reason=reason or "the pod ended without reporting this task", exitCode=event.exitCode,
            timedOut=event.timedOut,
        ))  # fmt: skip
        return


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
        step.fail_taskrun(tr, task, rules.child_failure(tr.child, event.state, event.error), event.at)
    else:
        step.finish_taskrun(tr, rules.child_state(event.state), event.at)


def kill(step: Step, event: Kill) -> None:
    """Kill everything under way: stop the attempts' pods, kill the children, and end KILLED."""
    if step.status.state.terminal:
        return
    step.touched = True
    step.status.set_state(State.KILLING, event.at)
    step.stop_everything(event.at)
    step.end_execution(State.KILLED, event.at, "killed")


def resume(step: Step, event: Resume) -> None:
    """Resume every paused task run with its onResume inputs (`outputs.<pauseId>.onResume`); the Pause then
    runs its tasks and succeeds, whatever its `behavior` (which applies only when its duration passes)."""
    status = step.status
    if status.acted_on("resume", event.value):
        return
    problem = controls.resume_problem(status)
    if problem is None:
        try:
            inputs = controls.resume_inputs(step.flow, status, event.inputs)
        except FlowError as exc:
            problem = f"invalid onResume inputs: {exc}"
    if problem is not None:
        step.record_control("resume", event.value, event.at, f"not resumed: {problem}", done=False)
        return
    resumed = controls.paused(status)
    for tr in resumed:
        tr.retryAt, tr.branch = None, "resumed"
        tr.outputs = {"onResume": inputs[tr.id]}
        tr.set_state(State.RUNNING, event.at)
    step.record_control("resume", event.value, event.at, "resumed " + ", ".join(tr.taskId for tr in resumed))


def restart(step: Step, event: Restart) -> None:
    """Kestra's restart: the execution is RESTARTED, then runs again from its failed task runs, which get a
    new attempt (a new pod; a Subflow a new child); successful task runs are kept. What the restart reopens
    keeps the spans it had (frozen, exported once) and gets new ones."""
    status = step.status
    if status.acted_on("restart", event.value):
        return
    problem = controls.restart_problem(step.flow, status)
    if problem is not None:
        step.record_control("restart", event.value, event.at, f"not restarted: {problem}", done=False)
        return
    reopen = controls.to_restart(step.flow, status)
    _freeze_spans(step, reopen)
    for tr in reopen:
        tr.set_state(State.RESTARTED, event.at)
        tr.error, tr.closedIn, tr.retryAt = None, None, None
        task = step.flow.task(tr.taskId)
        if isinstance(task, Subflow):
            tr.child, tr.outputs = None, {}
        elif isinstance(task, Pause):
            tr.branch, tr.outputs = None, {}
        elif not task.runs_in_worker:
            tr.set_state(State.RUNNING, event.at)
    status.restarts += 1
    status.error, status.closedIn, status.outputs = None, None, {}
    status.set_state(State.RESTARTED, event.at)
    status.set_state(State.RUNNING, event.at)
    names = ", ".join(tr.taskId for tr in reopen)
    step.record_control("restart", event.value, event.at, f"restarted {names}")


def _freeze_spans(step: Step, reopen: list[TaskRun]) -> None:
    """Keep the spans a restart reopens (the RUN span, the reopened flowables' spans) as they were derived,
    so each is exported exactly once with the change that completed it; the reopened ones get new ids."""
    status, run = step.status, step.run
    wanted = {ids.run_span_id(run, status.generation())}
    wanted |= {ids.taskrun_span_id(run, tr.id, tr.generation()) for tr in reopen}
    for closed_in, span in derive_spans(run, step.flow, status):
        if span.span_id in wanted:
            status.frozen.append(FrozenSpan(closedIn=closed_in, span=span))
            wanted.discard(span.span_id)


def tick(step: Step, event: Tick) -> None:
    """Time passed: nothing to record (the drivers start the retries, resumes and SLAs now due)."""


Transition = Callable[[Step, Any], None]

TRANSITIONS: dict[type[EventBase], Transition] = {
    Start: start,
    Admit: admit,
    AttemptStarted: attempt_started,
    AttemptFinished: attempt_finished,
    StepReported: step_reported,
    ChildFinished: child_finished,
    Kill: kill,
    Resume: resume,
    Restart: restart,
    Tick: tick,
}


def apply(step: Step, event: EventBase) -> None:
    """Apply one event through its transition; an event type without one is a programming error."""
    transition = TRANSITIONS.get(type(event))
    if transition is None:
        raise TypeError(f"the executor has no transition for {type(event).__name__} events")
    transition(step, event)


def _live_attempt(step: Step, event: AttemptEvent | StepReported) -> tuple[TaskRun | None, Attempt | None]:
    """The task run and its current attempt, if the event is about that attempt and it has not ended."""
    tr = step.status.taskrun(event.taskRunId)
    if tr is None or tr.state.terminal or not tr.attempts:
        return tr, None
    attempt = tr.attempts[-1]
    if attempt.number != event.attempt or attempt.state.terminal:
        return tr, None
    return tr, attempt


def _where(attempt: Attempt, event: AttemptEvent | StepReported) -> None:
    """Record where the attempt ran (the first observation of each fact wins)."""
    attempt.scheduledAt = attempt.scheduledAt or event.scheduledAt
    attempt.pod, attempt.node = event.pod or attempt.pod, event.node or attempt.node
