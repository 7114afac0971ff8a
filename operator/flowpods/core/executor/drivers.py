"""Deciding what runs next: one walk of the flow's tasks that starts what is due and settles what ended.

The walk goes in declaration order and reads only what it already walked (a task's state depends on its
own subtree, a rendering on earlier outputs), so one walk after the events reaches the fixed point: a
task that ends during the walk is seen ended by everything after it. Each task kind has one driver in
DRIVERS; Parallel and ForEach (and flowables to come) share one fan-out driver.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from flowpods.core.executor import rules, workdir
from flowpods.core.executor.rendering import PAUSE_DURATION, Renderer
from flowpods.core.executor.step import ACTIVE, Step, sla_deadlines
from flowpods.core.model import (
    AllowFailure,
    Dag,
    Each,
    EachParallel,
    EachSequential,
    Flowable,
    ForEach,
    If,
    Parallel,
    Pause,
    Sequential,
    Subflow,
    Switch,
    TaskBase,
    WaitFor,
    WorkingDirectory,
)
from flowpods.core.status import Attempt, State, TaskRun
from flowpods.core.templating import RenderError
from flowpods.core.workdir import steps_of


def drive(step: Step) -> None:
    """Run the flow's tasks, then `errors` if they failed, then `finally`; end the execution when all ended."""
    if step.status.state not in ACTIVE:
        return
    if _sla_exceeded(step):
        return
    _drive_flow(step)
    _paused_or_running(step)


def _drive_flow(step: Step) -> None:
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
    if not final.failed:
        final, reason = _sla_assertions(step, final, reason)
    if flow.afterExecution and drive_list(step, flow.afterExecution, None, None) == State.RUNNING:
        return  # they run once the final state is known, and do not change it
    step.end_execution(final, step.now, reason)


def _sla_exceeded(step: Step) -> bool:
    """A MAX_DURATION SLA that passed ends the execution (FAIL: FAILED, CANCEL: CANCELLED), stopping what runs."""
    for sla, deadline in sla_deadlines(step.flow, step.status, step.run):
        if step.now >= deadline:
            step.stop_everything(step.now)
            state = State.CANCELLED if sla.behavior == "CANCEL" else State.FAILED
            limit = sla.duration and PAUSE_DURATION.dump_python(sla.duration, mode="json")
            step.end_execution(state, step.now, f"SLA '{sla.id}' violated: the execution ran longer than {limit}")
            return True
    return False


def _sla_assertions(step: Step, final: State, reason: str | None) -> tuple[State, str | None]:
    """EXECUTION_ASSERTION SLAs are checked when the execution ends; a false one FAILs or CANCELs it."""
    for sla in step.flow.sla:
        if sla.type != "EXECUTION_ASSERTION" or sla.behavior == "NONE":
            continue
        try:
            holds = _renderer(step).sla_holds(sla)
        except RenderError as exc:
            return State.FAILED, f"SLA '{sla.id}': {exc}"
        if not holds:
            state = State.CANCELLED if sla.behavior == "CANCEL" else State.FAILED
            return state, f"SLA '{sla.id}' violated: {sla.assert_} is false"
    return final, reason


def _paused_or_running(step: Step) -> None:
    """Kestra's execution is PAUSED while one of its task runs is, RUNNING otherwise."""
    if step.status.state not in ACTIVE:
        return
    wanted = State.PAUSED if any(tr.state == State.PAUSED for tr in step.status.taskRuns) else State.RUNNING
    if step.status.state != wanted:
        step.status.set_state(wanted, step.now)
        step.touched = True


def drive_list(
    step: Step, tasks: Sequence[TaskBase], parent: TaskRun | None, value: str | None, iteration: int | None = None
) -> State:
    """Run the tasks in order, each once the one before ended without failing; the list's state."""
    states: list[State] = []
    for task in tasks:
        if task.disabled:
            continue
        tr = step.find(task, parent, value, iteration) or _create_taskrun(step, task, parent, value, iteration)
        states.append(drive_task(step, task, tr))
        if not rules.continues(states[-1]):
            break
    return rules.sequence(states)


def _create_taskrun(
    step: Step, task: TaskBase, parent: TaskRun | None, value: str | None, iteration: int | None
) -> TaskRun:
    """A new task run; with a `runIf` that renders false it is SKIPPED at once (a rendering error fails it)."""
    tr = step.create_taskrun(task, parent, value, iteration)
    if task.runIf is not None:
        try:
            runs = _renderer(step).run_if(task, tr)
        except RenderError as exc:
            step.fail_taskrun(tr, task, f"runIf: {exc}", step.now)
            return tr
        if not runs:
            step.finish_taskrun(tr, State.SKIPPED, step.now)
    return tr


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
    elif tr.state == State.RESTARTED:  # a restart: the next attempt at once
        _create_attempt(step, task, tr, tr.attempts[-1].number + 1 if tr.attempts else 1)
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
    """Sequential (and AllowFailure, whose failure ends WARNING): its tasks as one list."""
    assert isinstance(task, Sequential)
    settle_flowable(step, task, tr, drive_list(step, task.tasks, tr, tr.value))


def settle_flowable(step: Step, task: Flowable, tr: TaskRun, main: State) -> None:
    """A flowable's own `errors` run when its tasks failed, then its `finally`; then it ends as
    rules.flowable_outcome says."""
    if not main.terminal:
        return
    if rules.flowable_errors_due(task, main) and not drive_list(step, task.errors, tr, tr.value).terminal:
        return
    closing = State.SUCCESS
    if task.finally_ and main != State.KILLED:
        closing = drive_list(step, task.finally_, tr, tr.value)
        if not closing.terminal:
            return
    step.settle(tr, rules.flowable_outcome(main, closing))


def drive_branch(step: Step, task: TaskBase, tr: TaskRun) -> None:
    """If and Switch: choose the branch once (it is stored), then run it as a task list."""
    assert isinstance(task, If | Switch)
    if tr.branch is None:
        try:
            tr.branch, tr.outputs = _renderer(step).branch(task, tr)
        except RenderError as exc:
            step.fail_taskrun(tr, task, str(exc), step.now)
            return
    settle_flowable(step, task, tr, drive_list(step, _branch_tasks(task, tr.branch), tr, tr.value))


def drive_parallel(step: Step, task: TaskBase, tr: TaskRun) -> None:
    """Parallel: each enabled child task is a branch of the fan-out."""
    assert isinstance(task, Parallel)
    branches = [
        Branch(started=step.find(child, tr, tr.value) is not None, tasks=[child], value=tr.value)
        for child in task.tasks
        if not child.disabled
    ]
    settle_flowable(step, task, tr, fan_out(step, tr, branches, task.concurrency))


def drive_foreach(step: Step, task: TaskBase, tr: TaskRun) -> None:
    """ForEach, EachSequential, EachParallel: the values are rendered once (they are stored); each value's
    task list is a branch, at most `each_limit()` at once."""
    assert isinstance(task, Each)
    if tr.iterations is None:
        try:
            tr.iterations = _renderer(step).foreach_values(task, tr)
        except (RenderError, ValueError) as exc:
            step.fail_taskrun(tr, task, str(exc), step.now)
            return
    branches = [Branch(started=step.started(tr, value), tasks=task.tasks, value=value) for value in tr.iterations]
    settle_flowable(step, task, tr, fan_out(step, tr, branches, task.each_limit()))


def drive_dag(step: Step, task: TaskBase, tr: TaskRun) -> None:
    """Dag: a task starts once every task it depends on succeeded; at most `concurrent` at once (0: all)."""
    assert isinstance(task, Dag)
    entries = [entry for entry in task.tasks if not entry.task.disabled]
    enabled = {entry.task.id for entry in entries}
    states: dict[str, State] = {}
    for entry in entries:
        existing = step.find(entry.task, tr, tr.value)
        if existing is not None:
            states[entry.task.id] = drive_list(step, [entry.task], tr, tr.value)
    for entry in entries:
        if entry.task.id in states:
            continue
        if not rules.may_branch(states.values(), task.concurrent):
            break
        deps = [dep for dep in entry.dependsOn if dep in enabled]
        if all(dep in states and rules.continues(states[dep]) for dep in deps):
            states[entry.task.id] = drive_list(step, [entry.task], tr, tr.value)
    settle_flowable(step, task, tr, rules.join(states.values(), complete=len(states) == len(entries)))


def drive_waitfor(step: Step, task: TaskBase, tr: TaskRun) -> None:
    """WaitFor: run its tasks (iteration 0, 1, ...) until the condition, rendered after each iteration,
    holds; `checkFrequency.interval` apart, at most `maxIterations` (100) times and for `maxDuration` (1 h),
    after which it succeeds, or fails with `failOnMaxReached`."""
    assert isinstance(task, WaitFor)
    iteration = int(tr.outputs.get("iterationCount", 0))
    if not tr.outputs:
        tr.outputs = {"iterationCount": iteration}
    if tr.retryAt is not None:
        if step.now < tr.retryAt:
            return
        tr.retryAt, iteration = None, iteration + 1
        tr.outputs = {"iterationCount": iteration}
        step.touched = True
    state = drive_list(step, task.tasks, tr, tr.value, iteration)
    if not state.terminal or state.failed:
        settle_flowable(step, task, tr, state)
        return
    try:
        done = _renderer(step).condition(task.condition, task, tr)
    except RenderError as exc:
        step.fail_taskrun(tr, task, f"condition: {exc}", step.now)
        return
    check = task.checkFrequency
    started = tr.startDate or step.now
    if done:
        settle_flowable(step, task, tr, state)
    elif iteration + 1 >= check.maxIterations or step.now - started >= check.maxDuration:
        if task.failOnMaxReached:
            limit = "maxIterations" if iteration + 1 >= check.maxIterations else "maxDuration"
            reason = f"the condition was still false after {iteration + 1} iterations ({limit} reached)"
            step.fail_taskrun(tr, task, reason, step.now)
        else:
            settle_flowable(step, task, tr, state)
    else:
        tr.retryAt = step.now + check.interval
        step.touched = True


def drive_workdir(step: Step, task: TaskBase, tr: TaskRun) -> None:
    """WorkingDirectory: create its pod's attempt once; once the pod ended, its steps' task runs (created from
    the pod's reports) make its state as a task list's; then its `errors` and `finally` run as ordinary tasks."""
    assert isinstance(task, WorkingDirectory)
    steps = steps_of(task)
    if not steps:
        settle_flowable(step, task, tr, State.SUCCESS)
        return
    if not tr.attempts:
        action = workdir.run_action(_renderer(step), task, tr, 1)
        if isinstance(action, str):
            step.fail_taskrun(tr, task, action, step.now)
            return
        tr.attempts.append(Attempt(number=1, createdAt=step.now))
        step.created.append(f"{tr.taskId}#1")
        step.actions.append(action)
    if not tr.attempts[-1].state.terminal:
        return
    states = [found.state for child in steps if (found := step.find(child, tr, tr.value)) is not None]
    settle_flowable(step, task, tr, rules.sequence(states))


def drive_pause(step: Step, task: TaskBase, tr: TaskRun) -> None:
    """Pause: PAUSED until resumed (the Resume transition), or for at most the rendered duration, after
    which RESUME runs its tasks, and WARN, CANCEL or FAIL end it so."""
    assert isinstance(task, Pause)
    if tr.branch is None:
        try:
            duration = _renderer(step).pause_duration(task, tr) if task.duration is not None else None
        except (RenderError, ValueError) as exc:
            step.fail_taskrun(tr, task, str(exc), step.now)
            return
        tr.branch = "paused"
        tr.retryAt = step.now + duration if duration is not None else None
        tr.set_state(State.PAUSED, step.now)
        step.touched = True
    if tr.state == State.PAUSED:
        if tr.retryAt is None or step.now < tr.retryAt:
            return
        tr.retryAt, tr.branch = None, "resumed"
        tr.set_state(State.RUNNING, step.now)
        step.touched = True
        if task.behavior == "FAIL":
            step.fail_taskrun(tr, task, "the pause ended (behavior FAIL)", step.now)
            return
        if task.behavior in ("CANCEL", "WARN"):
            step.finish_taskrun(tr, State.CANCELLED if task.behavior == "CANCEL" else State.WARNING, step.now)
            return
    settle_flowable(step, task, tr, drive_list(step, task.tasks, tr, tr.value))


@dataclass(frozen=True)
class Branch:
    """One branch of a fan-out: a task list run under the fan-out's task run with one value."""

    started: bool
    tasks: Sequence[TaskBase]
    value: str | None


def fan_out(step: Step, tr: TaskRun, branches: Sequence[Branch], limit: int) -> State:
    """Drive the branches already started, start more while the rules allow, and join their states.

    `may_branch` reads only the branches still running and the failed ones, so those are what it is given:
    a ForEach of 10,000 values would otherwise read every ended branch for each one it starts."""
    states = [drive_list(step, b.tasks, tr, b.value) for b in branches if b.started]
    open_or_failed = [state for state in states if not state.terminal or state.failed]
    for branch in branches:
        if branch.started:
            continue
        if not rules.may_branch(open_or_failed, limit):
            break
        states.append(state := drive_list(step, branch.tasks, tr, branch.value))
        if not state.terminal or state.failed:
            open_or_failed.append(state)
    return rules.join(states, complete=len(states) == len(branches))


Driver = Callable[[Step, TaskBase, TaskRun], None]

_WORKER: Driver = drive_worker
DRIVERS: dict[type[TaskBase], Driver] = {
    Subflow: drive_subflow,
    Sequential: drive_sequential,
    AllowFailure: drive_sequential,
    Parallel: drive_parallel,
    If: drive_branch,
    Switch: drive_branch,
    ForEach: drive_foreach,
    EachSequential: drive_foreach,
    EachParallel: drive_foreach,
    Dag: drive_dag,
    Pause: drive_pause,
    WaitFor: drive_waitfor,
    WorkingDirectory: drive_workdir,
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
