"""Deciding what runs next: one walk of the flow's tasks that starts what is due and settles what ended.

The walk goes in declaration order and reads only what it already walked (a task's state depends on its
own subtree, a rendering on earlier outputs), so one walk after the events reaches the fixed point: a
task that ends during the walk is seen ended by everything after it. Each task kind has one driver in
DRIVERS; Parallel and ForEach (and flowables to come) share one fan-out driver.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flowpods.core.executor import rules
from flowpods.core.executor.rendering import Renderer
from flowpods.core.executor.step import Step
from flowpods.core.model import ForEach, If, Parallel, Sequential, Subflow, Switch, TaskBase
from flowpods.core.status import Attempt, State, TaskRun
from flowpods.core.templating import RenderError


def drive(step: Step) -> None:
    """Run the flow's tasks, then `errors` if they failed, then `finally`; end the execution when all ended."""
    if step.status.state != State.RUNNING:
        return
    flow = step.flow
    main = drive_list(step, flow.tasks, None, None)
    if main == State.RUNNING:
        return
    if rules.errors_due(main, bool(flow.errors)) and drive_list(step, flow.errors, None, None) == State.RUNNING:
        return
    closing = drive_list(step, flow.finally_, None, None) if flow.finally_ else State.SUCCESS
    if closing == State.RUNNING:
        return
    final = rules.outcome(main, closing)
    reason = step.first_failure() if final.failed else None
    if not final.failed and flow.outputs:
        try:
            step.status.outputs = _renderer(step).flow_outputs()
        except (RenderError, ValueError) as exc:
            final, reason = State.FAILED, f"flow output: {exc}"
    step.end_execution(final, step.now, reason)


def drive_list(step: Step, tasks: Sequence[TaskBase], parent: TaskRun | None, value: str | None) -> State:
    """Run the tasks in order, each once the one before ended without failing; the list's state."""
    states: list[State] = []
    for task in tasks:
        if task.disabled:
            continue
        tr = step.find(task, parent, value) or step.create_taskrun(task, parent, value)
        states.append(drive_task(step, task, tr))
        if not rules.continues(states[-1]):
            break
    return rules.sequence(states)


def drive_task(step: Step, task: TaskBase, tr: TaskRun) -> State:
    if tr.state.terminal:
        return tr.state
    driver = _WORKER if task.runs_in_worker else DRIVERS.get(type(task))
    if driver is None:
        raise TypeError(f"the executor has no driver for {type(task).__name__} tasks")
    driver(step, task, tr)
    return tr.state


def drive_worker(step: Step, task: TaskBase, tr: TaskRun) -> None:
    """A worker task: its first attempt, or the next one once its retry is due."""
    if tr.attempts and not tr.attempts[-1].state.terminal:
        return
    if tr.state == State.CREATED and not tr.attempts:
        _create_attempt(step, task, tr, 1)
    elif tr.state == State.RETRYING and tr.retryAt is not None and step.now >= tr.retryAt:
        _create_attempt(step, task, tr, tr.attempts[-1].number + 1)


def drive_subflow(step: Step, task: TaskBase, tr: TaskRun) -> None:
    """A Subflow: start its child once; without `wait` it succeeds as soon as the child was asked for."""
    assert isinstance(task, Subflow)
    if tr.child:
        return
    action = _renderer(step).start_subflow(task, tr)
    if isinstance(action, str):
        step.fail_taskrun(tr, task, action, step.now)
        return
    tr.child = action.name
    tr.outputs = {"executionId": action.name}
    tr.set_state(State.RUNNING, step.now)
    step.created.append(f"{tr.taskId}->{action.name}")
    step.actions.append(action)
    if not task.wait:
        step.finish_taskrun(tr, State.SUCCESS, step.now)


def drive_sequential(step: Step, task: TaskBase, tr: TaskRun) -> None:
    assert isinstance(task, Sequential)
    step.settle(tr, drive_list(step, task.tasks, tr, tr.value))


def drive_branch(step: Step, task: TaskBase, tr: TaskRun) -> None:
    """If and Switch: choose the branch once (it is stored), then run it as a task list."""
    assert isinstance(task, If | Switch)
    if tr.branch is None:
        try:
            tr.branch, tr.outputs = _renderer(step).branch(task, tr)
        except RenderError as exc:
            step.fail_taskrun(tr, task, str(exc), step.now)
            return
    step.settle(tr, drive_list(step, _branch_tasks(task, tr.branch), tr, tr.value))


def drive_parallel(step: Step, task: TaskBase, tr: TaskRun) -> None:
    """Parallel: each enabled child task is a branch of the fan-out."""
    assert isinstance(task, Parallel)
    branches = [
        Branch(started=step.find(child, tr, tr.value) is not None, tasks=[child], value=tr.value)
        for child in task.tasks
        if not child.disabled
    ]
    step.settle(tr, fan_out(step, tr, branches, task.concurrency))


def drive_foreach(step: Step, task: TaskBase, tr: TaskRun) -> None:
    """ForEach: its values are rendered once (they are stored); each value's task list is a branch."""
    assert isinstance(task, ForEach)
    if tr.iterations is None:
        try:
            tr.iterations = _renderer(step).foreach_values(task, tr)
        except (RenderError, ValueError) as exc:
            step.fail_taskrun(tr, task, str(exc), step.now)
            return
    branches = [Branch(started=step.started(tr, value), tasks=task.tasks, value=value) for value in tr.iterations]
    step.settle(tr, fan_out(step, tr, branches, task.concurrencyLimit))


@dataclass(frozen=True)
class Branch:
    """One branch of a fan-out: a task list run under the fan-out's task run with one value."""

    started: bool
    tasks: Sequence[TaskBase]
    value: str | None


def fan_out(step: Step, tr: TaskRun, branches: Sequence[Branch], limit: int) -> State:
    """Drive the branches already started, start more while the rules allow, and join their states."""
    states = [drive_list(step, b.tasks, tr, b.value) for b in branches if b.started]
    for branch in branches:
        if branch.started:
            continue
        if not rules.may_branch(states, limit):
            break
        states.append(drive_list(step, branch.tasks, tr, branch.value))
    return rules.join(states, complete=len(states) == len(branches))


Driver = Callable[[Step, TaskBase, TaskRun], None]

_WORKER: Driver = drive_worker
DRIVERS: dict[type[TaskBase], Driver] = {
    Subflow: drive_subflow,
    Sequential: drive_sequential,
    Parallel: drive_parallel,
    If: drive_branch,
    Switch: drive_branch,
    ForEach: drive_foreach,
}


def _branch_tasks(task: If | Switch, branch: str) -> Sequence[TaskBase]:
    if isinstance(task, If):
        return task.then if branch == "then" else task.else_
    if branch.startswith("case:"):
        return task.cases.get(branch.removeprefix("case:"), [])
    return task.defaults


def _create_attempt(step: Step, task: TaskBase, tr: TaskRun, number: int) -> None:
    action = _renderer(step).run_task(task, tr, number)
    if isinstance(action, str):
        step.fail_taskrun(tr, task, action, step.now)
        return
    tr.retryAt = None
    tr.attempts.append(Attempt(number=number, createdAt=step.now))
    step.created.append(f"{tr.taskId}#{number}")
    step.actions.append(action)


def _renderer(step: Step) -> Renderer:
    return Renderer(step.flow, step.run, step.status, step.now)
