"""The run view's timeline: one row per task run, each bar split into the phases its stored times show.

A pure function of an execution's stored status (and its subflows' statuses, and what the adapter read
from pods), with `now` passed in, so the web page and `flowpods get` show the same rows, the same phases
and the same critical path. A phase whose start or end is not known is not guessed: the attempt lists
it under `unknown`, and the page says so.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field

from flowpods.core.critical import Node, critical_path
from flowpods.core.model import Flow, TaskBase
from flowpods.core.status import Attempt, ExecutionStatus, State, TaskRun, WithHistory

# the phases of one attempt, in order: the executor decided to create the pod, the scheduler placed it,
# its container started, the worker worked, then it ended
QUEUED, STARTING, WORKING, RETRY_WAIT, EXECUTOR = "queued", "starting", "working", "retry wait", "executor"


@dataclass(frozen=True)
class PodFacts:
    """What the adapter read from a pod, for attempts whose stored status does not have it yet."""

    scheduledAt: datetime | None = None
    startedAt: datetime | None = None


@dataclass(frozen=True)
class ChildRun:
    """A subflow's execution: its name, stored status and flow, nested under the Subflow task run."""

    name: str
    status: ExecutionStatus
    flow: Flow | None


class Phase(BaseModel):
    name: str
    start: datetime
    end: datetime


class AttemptBar(BaseModel):
    number: int
    state: State
    phases: list[Phase] = Field(default_factory=list)
    unknown: list[str] = Field(default_factory=list, description="Transitions whose time is not known")
    pod: str | None = None
    node: str | None = None
    reason: str | None = None
    exitCode: int | None = None


class Row(BaseModel):
    """One task run (or a task not run yet), at its depth in the tree."""

    key: str
    depth: int
    label: str
    taskId: str
    taskRunId: str | None = None
    execution: str = Field(description="The execution this task run belongs to (a subflow's for nested rows)")
    kind: str = ""
    state: str
    start: datetime | None = None
    end: datetime | None = None
    seconds: float | None = None
    running: bool = False
    attempts: list[AttemptBar] = Field(default_factory=list)
    phases: list[Phase] = Field(default_factory=list, description="Executor task runs, and waits between attempts")
    critical: bool = False
    outputs: dict[str, object] = Field(default_factory=dict)
    error: str | None = None


class Timeline(BaseModel):
    execution: str
    state: str
    start: datetime
    end: datetime
    running: bool
    queuedSeconds: float | None
    rows: list[Row]
    critical: list[str] = Field(description="Row keys on the critical path, in time order")
    slowest: str | None = Field(default=None, description="The row key of the slowest worker task run")


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return max((end - start).total_seconds(), 0.0) if start is not None and end is not None else None


def queued_seconds(status: WithHistory, created: datetime) -> float | None:
    """From the Execution's creation until it first ran (admission, a concurrency limit): None before it ran."""
    running = next((h.at for h in status.history if h.state == State.RUNNING), None)
    if running is None:
        return None
    return _seconds(created, running)


def attempt_bar(attempt: Attempt, now: datetime, pod: PodFacts | None = None) -> AttemptBar:
    """An attempt's phases: queued (created, not scheduled), starting (scheduled, container not started),
    working (until it ended, or `now`); the times the stored status lacks are taken from the pod when given."""
    scheduled = attempt.scheduledAt or (pod.scheduledAt if pod else None)
    started = attempt.startedAt or (pod.startedAt if pod else None)
    end = attempt.endedAt
    done = attempt.state.terminal or end is not None
    stop = end or (max(t for t in (attempt.createdAt, scheduled, started) if t is not None) if done else now)
    unknown = []
    if scheduled is None and (started is not None or done):
        unknown.append("pod scheduled")
    if started is None and done:
        unknown.append("container started")
    if end is None and done:
        unknown.append("ended")
    # a transition whose time is not known is not guessed: the phases around it are shown as one
    ambiguous = scheduled is None and (started is not None or done)
    marks: list[tuple[str, datetime]] = [(QUEUED + " or starting" if ambiguous else QUEUED, attempt.createdAt)]
    if scheduled is not None:
        marks.append((STARTING, scheduled))
    if started is not None:
        marks.append((WORKING, started))
    elif done:
        last_name, last_at = marks.pop()
        marks.append((last_name + " or working", last_at))
    phases = []
    for i, (name, at) in enumerate(marks):
        following = marks[i + 1][1] if i + 1 < len(marks) else stop
        phases.append(Phase(name=name, start=at, end=max(following, at)))
    return AttemptBar(
        number=attempt.number,
        state=attempt.state,
        phases=phases,
        unknown=unknown,
        pod=attempt.pod,
        node=attempt.node,
        reason=attempt.reason,
        exitCode=attempt.exitCode,
    )


def _label(tr: TaskRun) -> str:
    return tr.taskId if tr.value is None else f"{tr.taskId} [{tr.value}]"


class _Builder:
    def __init__(self, children: Mapping[str, ChildRun], pods: Mapping[str, PodFacts], now: datetime):
        self.children, self.pods, self.now = children, pods, now
        self.rows: list[Row] = []

    def execution(self, name: str, status: ExecutionStatus, flow: Flow | None, depth: int) -> list[Node]:
        """Append the rows of one execution's task runs under `parent`; returns their critical-path nodes."""
        kinds = {task.id: task for task in flow.all_tasks()} if flow else {}
        by_parent: dict[str | None, list[TaskRun]] = {}
        known = {tr.id for tr in status.taskRuns}
        for tr in status.taskRuns:
            by_parent.setdefault(tr.parentId if tr.parentId in known else None, []).append(tr)
        nodes = self._runs(name, by_parent, None, kinds, depth)
        if flow is not None:
            self._not_run(name, flow, status, depth)
        return nodes

    def _runs(
        self,
        name: str,
        by_parent: dict[str | None, list[TaskRun]],
        parent: str | None,
        kinds: Mapping[str, TaskBase],
        depth: int,
    ) -> list[Node]:
        nodes = []
        for tr in sorted(by_parent.get(parent, []), key=lambda t: (t.startDate or self.now, t.id)):
            nodes.append(self._run(name, tr, by_parent, kinds, depth))
        return nodes

    def _run(
        self,
        name: str,
        tr: TaskRun,
        by_parent: dict[str | None, list[TaskRun]],
        kinds: Mapping[str, TaskBase],
        depth: int,
    ) -> Node:
        task = kinds.get(tr.taskId)
        key = f"{name}/{tr.id}"
        start = tr.startDate or self.now
        end = tr.endDate
        row = Row(
            key=key,
            depth=depth,
            label=_label(tr),
            taskId=tr.taskId,
            taskRunId=tr.id,
            execution=name,
            kind=task.kind if task else "",
            state=tr.state.value,
            start=start,
            end=end,
            seconds=_seconds(start, end or self.now),
            running=end is None,
            outputs=tr.outputs,
            error=tr.error,
        )
        self.rows.append(row)
        stop = end or self.now
        nested: list[Node] = []
        if task is not None and task.runs_in_worker:
            previous: Attempt | None = None
            for attempt in tr.attempts:
                bar = attempt_bar(attempt, self.now, self.pods.get(attempt.pod or ""))
                row.attempts.append(bar)
                if previous is not None and previous.endedAt is not None and attempt.createdAt > previous.endedAt:
                    row.phases.append(Phase(name=RETRY_WAIT, start=previous.endedAt, end=attempt.createdAt))
                if bar.phases:
                    nested.append(Node(f"{key}#{attempt.number}", bar.phases[0].start, bar.phases[-1].end))
                previous = attempt
        else:
            row.phases.append(Phase(name=EXECUTOR, start=start, end=stop))
            nested = self._runs(name, by_parent, tr.id, kinds, depth + 1)
            child = self.children.get(tr.child or "")
            if child is not None:
                nested.append(self._child(child, depth + 1))
        return Node(key, start, stop, tuple(nested))

    def _child(self, child: ChildRun, depth: int) -> Node:
        status = child.status
        start = status.startDate or self.now
        stop = status.endDate or self.now
        key = f"{child.name}/"
        self.rows.append(
            Row(
                key=key,
                depth=depth,
                label=f"▸ subflow {child.name}",
                taskId="",
                execution=child.name,
                kind="execution",
                state=status.state.value,
                start=start,
                end=status.endDate,
                seconds=_seconds(start, stop),
                running=status.endDate is None,
                phases=[Phase(name=EXECUTOR, start=start, end=stop)],
                outputs=status.outputs,
                error=status.error,
            )
        )
        nodes = self.execution(child.name, status, child.flow, depth + 1)
        return Node(key, start, stop, tuple(nodes))

    def _not_run(self, name: str, flow: Flow, status: ExecutionStatus, depth: int) -> None:
        """Tasks of the flow with no task run yet: shown so that a person sees what is still to come."""
        ran = {tr.taskId for tr in status.taskRuns}
        if status.state.terminal:
            return
        for task in flow.tasks:
            if task.id not in ran and not task.disabled:
                self.rows.append(
                    Row(
                        key=f"{name}/task:{task.id}",
                        depth=depth,
                        label=task.id,
                        taskId=task.id,
                        execution=name,
                        kind=task.kind,
                        state="NOT_RUN",
                    )
                )


def timeline(
    name: str,
    created: datetime,
    status: ExecutionStatus,
    flow: Flow | None,
    now: datetime,
    children: Mapping[str, ChildRun] | None = None,
    pods: Mapping[str, PodFacts] | None = None,
) -> Timeline:
    """Rows in tree order (a subflow's rows under its Subflow task run), the critical path marked."""
    builder = _Builder(children or {}, pods or {}, now)
    nodes = builder.execution(name, status, flow, 0)
    end = status.endDate or now
    path = critical_path(Node("", created, end, tuple(nodes)))[1:]
    on_path = set(path)
    for row in builder.rows:
        row.critical = row.key in on_path
    workers = [r for r in builder.rows if r.attempts and r.seconds is not None]
    slowest = max(workers, key=lambda r: r.seconds or 0.0, default=None)
    return Timeline(
        execution=name,
        state=status.state.value,
        start=created,
        end=end,
        running=not status.state.terminal,
        queuedSeconds=queued_seconds(status, created),
        rows=builder.rows,
        critical=[key for key in path if "#" not in key],
        slowest=slowest.key if slowest else None,
    )


def task_medians(statuses: Iterable[ExecutionStatus]) -> dict[str, float]:
    """Each task's median duration over finished task runs of recent executions (ForEach values pooled)."""
    samples: dict[str, list[float]] = {}
    for status in statuses:
        for tr in status.taskRuns:
            seconds = _seconds(tr.startDate, tr.endDate)
            if seconds is not None and tr.state in (State.SUCCESS, State.WARNING):
                samples.setdefault(tr.taskId, []).append(seconds)
    return {task: statistics.median(values) for task, values in samples.items()}


class Comparison(BaseModel):
    label: str
    a: float | None
    b: float | None
    stateA: str | None
    stateB: str | None


def compare(a: Sequence[Row], b: Sequence[Row]) -> list[Comparison]:
    """Two executions of a flow, task by task (matched on task id and value), in the first's order."""

    def index(rows: Sequence[Row]) -> dict[str, Row]:
        return {r.label: r for r in rows if r.taskRunId is not None}

    left, right = index(a), index(b)
    labels = list(left) + [label for label in right if label not in left]
    return [
        Comparison(
            label=label,
            a=left[label].seconds if label in left else None,
            b=right[label].seconds if label in right else None,
            stateA=left[label].state if label in left else None,
            stateB=right[label].state if label in right else None,
        )
        for label in labels
    ]
