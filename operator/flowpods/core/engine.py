"""The executor: a pure state machine from (flow, stored status, events, now) to (new status, actions).

It is level-based, like a Kubernetes controller: every call recomputes what should exist from the stored
task runs, so replaying an event that was already applied changes nothing, and an adapter that died
between committing a status and acting on it recovers with `pending_actions`. Adapters (the kopf
operator, the local runner) own all I/O: they turn actions into pods or processes and observations of
those back into events.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from flowpods.core import ids
from flowpods.core.inputs import coerce, nested, resolve_inputs
from flowpods.core.model import (
    SLA,
    Dag,
    Each,
    Flow,
    Flowable,
    FlowError,
    If,
    Input,
    Parallel,
    Pause,
    Python,
    Sequential,
    Shell,
    Subflow,
    Switch,
    TaskBase,
)
from flowpods.core.records import WorkItem
from flowpods.core.status import Attempt, Change, ExecutionStatus, RunInfo, State, TaskRun
from flowpods.core.templating import RenderError, is_truthy, render, render_string

# --- events: what the adapters observed ----------------------------------------------------------------


class _Event(BaseModel):
    at: datetime


class Start(_Event):
    """Start the execution: resolve inputs, then run (or queue behind the flow's concurrency limit)."""

    kind: Literal["start"] = "start"
    inputs: dict[str, Any] = Field(default_factory=dict)
    queued: bool = False


class Admit(_Event):
    """A queued execution may run now."""

    kind: Literal["admit"] = "admit"


class _AttemptEvent(_Event):
    """What a pod (or process) says about one attempt, and where it ran."""

    taskRunId: str
    attempt: int
    pod: str | None = None
    node: str | None = None
    scheduledAt: datetime | None = None


class AttemptStarted(_AttemptEvent):
    kind: Literal["attempt-started"] = "attempt-started"


class AttemptFinished(_AttemptEvent):
    kind: Literal["attempt-finished"] = "attempt-finished"
    success: bool
    outputs: dict[str, Any] = Field(default_factory=dict)
    reason: str | None = None
    exitCode: int | None = None
    startedAt: datetime | None = None
    timedOut: bool = False


class ChildFinished(_Event):
    kind: Literal["child-finished"] = "child-finished"
    taskRunId: str
    state: State
    outputs: dict[str, Any] = Field(default_factory=dict)


class Kill(_Event):
    kind: Literal["kill"] = "kill"


class Tick(_Event):
    """Time passed (a retry may be due)."""

    kind: Literal["tick"] = "tick"


Event = Annotated[
    Start | Admit | AttemptStarted | AttemptFinished | ChildFinished | Kill | Tick, Field(discriminator="kind")
]

# --- actions: what the adapters must do ----------------------------------------------------------------


class RunTask(BaseModel):
    """Run one attempt of a worker task (a pod, or a local process)."""

    kind: Literal["run-task"] = "run-task"
    work: WorkItem
    traceparent: str = Field(description="The TASKRUN span's context, for the TRACEPARENT variable")
    tracestate: str | None = None
    baggage: str | None = None
    containerImage: str | None = Field(default=None, description="Shell/Python: the image they asked for")
    timeoutSeconds: float | None = None


class StopTask(BaseModel):
    kind: Literal["stop-task"] = "stop-task"
    taskRunId: str
    attempt: int


class StartSubflow(BaseModel):
    kind: Literal["start-subflow"] = "start-subflow"
    taskRunId: str
    name: str = Field(description="The child execution's name, derived so that a retry creates the same one")
    namespace: str
    flowId: str
    inputs: dict[str, Any]
    labels: dict[str, str]
    traceparent: str = Field(description="The parent's Subflow EXECUTOR span: the child's RUN hangs under it")


class KillSubflow(BaseModel):
    kind: Literal["kill-subflow"] = "kill-subflow"
    taskRunId: str
    name: str


Action = Annotated[RunTask | StopTask | StartSubflow | KillSubflow, Field(discriminator="kind")]


class Decision(BaseModel):
    status: ExecutionStatus
    actions: list[Action] = Field(default_factory=list)
    wakeAt: datetime | None = Field(default=None, description="Call advance again (with Tick) at this time")
    changed: bool = False


# --- span ids the engine hands out (the tracing module derives the same ones) ---------------------------


def trace_id(run: RunInfo) -> str:
    parent = ids.parse_traceparent(run.parentTraceparent)
    return parent.trace_id if parent else ids.trace_id_for(run.uid)


def sampled(run: RunInfo) -> bool:
    parent = ids.parse_traceparent(run.parentTraceparent)
    return parent.sampled if parent else True


def run_span_id(run: RunInfo) -> str:
    return ids.span_id_for(run.uid, "run")


def change_span_id(run: RunInfo, n: int) -> str:
    return ids.span_id_for(run.uid, "change", n)


def taskrun_span_id(run: RunInfo, taskrun_id: str) -> str:
    """The EXECUTOR span of an executor-side task run (Subflow, Parallel, If, ...)."""
    return ids.span_id_for(run.uid, "taskrun", taskrun_id)


def attempt_span_id(run: RunInfo, taskrun_id: str, attempt: int) -> str:
    """The TASKRUN span of one attempt: the worker's TRACEPARENT points at it."""
    return ids.span_id_for(run.uid, "attempt", taskrun_id, attempt)


def traceparent_of(run: RunInfo, span_id: str) -> str:
    return f"00-{trace_id(run)}-{span_id}-{'01' if sampled(run) else '00'}"


def taskrun_id(run: RunInfo, task_id: str, parent_id: str | None, value: str | None) -> str:
    return ids.short_id(run.uid, task_id, parent_id or "", value if value is not None else "\x00")


def ids_duration(value: timedelta) -> str:
    return PAUSE_DURATION.dump_python(value, mode="json")


def dns_label(text: str, limit: int) -> str:
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return cleaned[:limit].rstrip("-") or "x"


def child_name(run: RunInfo, taskrun: TaskRun, flow_id: str) -> str:
    return f"{dns_label(flow_id, 40)}-{ids.short_id(run.uid, 'child', taskrun.id, length=8)}"


# --- the state machine ---------------------------------------------------------------------------------


def advance(flow: Flow, run: RunInfo, status: ExecutionStatus | None, events: list[Any], now: datetime) -> Decision:
    """Apply the events to a copy of the status, then start whatever should run next."""
    machine = _Machine(flow, run, (status or ExecutionStatus()).model_copy(deep=True), now)
    for event in events:
        machine.apply(event)
    machine.drive()
    return machine.decision(events)


def failed_start(run: RunInfo, reason: str, now: datetime, state: State = State.FAILED) -> ExecutionStatus:
    """The status of an execution that cannot start at all (its flow is missing or invalid, or it was
    refused by the flow's concurrency limit: CANCELLED)."""
    status = ExecutionStatus()
    status.set_state(State.CREATED, run.createdAt)
    status.set_state(state, now)
    status.error = reason
    status.closedIn = 1
    status.changes.append(Change(n=1, start=now, end=now, state=state, cause="start"))
    return status


def pending_actions(
    flow: Flow,
    run: RunInfo,
    status: ExecutionStatus,
    now: datetime,
    lost: Callable[[TaskRun], bool] | None = None,
) -> list[Action]:
    """Actions for everything the status says is under way: to re-create what an adapter may have lost.

    `lost` narrows them to the task runs whose pod or child the adapter does not see, so that the
    attempts still running are not rendered again on every reconcile. The status is only read.
    """
    machine = _Machine(flow, run, status, now)
    actions: list[Action] = []
    if status.state.terminal:
        return actions
    for tr in status.taskRuns:
        if tr.state.terminal or (lost is not None and not lost(tr)):
            continue
        task = flow.task(tr.taskId)
        if task.runs_in_worker and tr.attempts and not tr.attempts[-1].state.terminal:
            action = machine.run_action(task, tr, tr.attempts[-1].number)
            if isinstance(action, RunTask):
                actions.append(action)
        elif isinstance(task, Subflow) and tr.child:
            action = machine.subflow_action(task, tr)
            if isinstance(action, StartSubflow):
                actions.append(action)
    return actions


def render_context(
    flow: Flow,
    run: RunInfo,
    status: ExecutionStatus,
    now: datetime,
    task: TaskBase | None = None,
    taskrun: TaskRun | None = None,
    attempt: int | None = None,
) -> dict[str, Any]:
    """Kestra's template variables, computed from the stored status.

    `taskrun.attemptsCount` is the number of attempts before the one being rendered (0 on the first), so
    that rendering an attempt again (after an operator restart) gives the same result.
    """
    outputs: dict[str, Any] = {}
    for tr in status.taskRuns:
        if not tr.outputs:
            continue
        if tr.value is None:
            outputs[tr.taskId] = tr.outputs
        else:
            outputs.setdefault(tr.taskId, {})[tr.value] = tr.outputs
    context: dict[str, Any] = {
        "inputs": nested(status.inputs),
        "outputs": outputs,
        "vars": flow.variables,
        "execution": {
            "id": run.id,
            "startDate": (status.startDate or run.createdAt).isoformat(),
            "state": status.state.value,
        },
        "flow": {"id": flow.id, "namespace": flow.namespace, "revision": run.flowRevision},
        "trigger": run.triggerData,
        "labels": {**flow.labels, **run.labels},
        "now": lambda: now.isoformat(),
    }
    if task is not None:
        context["task"] = {"id": task.id, "type": task.kind}
    if taskrun is not None:
        context["taskrun"] = {
            "id": taskrun.id,
            "value": taskrun.value,
            "attemptsCount": (attempt - 1) if attempt is not None else len(taskrun.attempts),
            "parentId": taskrun.parentId,
            "startDate": taskrun.startDate.isoformat() if taskrun.startDate else None,
        }
        parent = status.taskrun(taskrun.parentId) if taskrun.parentId else None
        if parent is not None:
            context["parent"] = {"taskrun": {"id": parent.id, "value": parent.value}, "outputs": parent.outputs}
    return context


# The task types the executor runs itself (every other accepted type runs in a worker).
EXECUTOR_TASKS: tuple[type[TaskBase], ...] = (Subflow, Sequential, Parallel, If, Switch, Each, Dag, Pause)
ACTIVE = (State.RUNNING, State.PAUSED)  # an execution that still drives its tasks

WAITING = (State.RETRYING, State.PAUSED)  # task runs whose retryAt is when they go on
PAUSE_DURATION: TypeAdapter[timedelta] = TypeAdapter(timedelta)

MAX_SUBFLOW_DEPTH = 10  # a flow that calls itself must end, not fill the cluster

WORKER_FIELDS_EXCLUDED = {
    "id", "type", "retry", "timeout", "allowFailure", "allowWarning", "disabled", "description", "runIf",
    "logLevel", "logToFile", "workerGroup",
}  # fmt: skip


class _Machine:
    def __init__(self, flow: Flow, run: RunInfo, status: ExecutionStatus, now: datetime):
        self.flow, self.run, self.status, self.now = flow, run, status, now
        self.n = (status.changes[-1].n if status.changes else 0) + 1
        self.actions: list[Action] = []
        self.created: list[str] = []
        self.finished: list[str] = []
        self.touched = False
        self.index = {(tr.taskId, tr.parentId, tr.value): tr for tr in status.taskRuns}
        self.scopes = {(tr.parentId, tr.value) for tr in status.taskRuns}

    # -- events ---------------------------------------------------------------------------------------

    def apply(self, event: Any) -> None:
        handler = getattr(self, "_on_" + event.kind.replace("-", "_"))
        handler(event)

    def _on_start(self, event: Start) -> None:
        if self.status.history:
            return  # already started: replays change nothing
        self.touched = True
        self.status.set_state(State.CREATED, self.run.createdAt)
        try:
            self.status.inputs = resolve_inputs(self.flow, event.inputs)
        except FlowError as exc:
            self._end_execution(State.FAILED, event.at, f"invalid inputs: {exc}")
            return
        if event.queued:
            self.status.set_state(State.QUEUED, event.at)
        else:
            self.status.set_state(State.RUNNING, event.at)

    def _on_admit(self, event: Admit) -> None:
        if self.status.state == State.QUEUED:
            self.touched = True
            self.status.set_state(State.RUNNING, event.at)

    def _on_attempt_started(self, event: AttemptStarted) -> None:
        tr, attempt = self._live_attempt(event.taskRunId, event.attempt)
        if attempt is None or attempt.startedAt is not None:
            return
        self.touched = True
        attempt.startedAt = event.at
        self._where(attempt, event)
        attempt.state = State.RUNNING
        tr.set_state(State.RUNNING, event.at)

    def _on_attempt_finished(self, event: AttemptFinished) -> None:
        tr, attempt = self._live_attempt(event.taskRunId, event.attempt)
        if attempt is None:
            return
        self.touched = True
        attempt.startedAt = attempt.startedAt or event.startedAt or event.at
        self._where(attempt, event)
        attempt.endedAt = event.at
        attempt.exitCode = event.exitCode
        attempt.closedIn = self.n
        self.finished.append(f"{tr.taskId}#{attempt.number}")
        if tr.state != State.RUNNING:
            tr.set_state(State.RUNNING, attempt.startedAt)
        task = self.flow.task(tr.taskId)
        if event.success:
            attempt.state = State.SUCCESS
            tr.outputs = event.outputs
            retry = self.flow.retry_of(task)
            warn = retry is not None and retry.warningOnRetry and attempt.number > 1
            self._finish_taskrun(tr, State.WARNING if warn else State.SUCCESS, event.at)
            return
        attempt.state = State.FAILED
        attempt.reason = event.reason or (f"exit code {event.exitCode}" if event.exitCode is not None else "failed")
        if event.timedOut and not attempt.reason.lower().startswith("timeout"):
            attempt.reason = f"timeout: {attempt.reason}"
        retry = self.flow.retry_of(task)
        first_start = tr.attempts[0].startedAt or tr.attempts[0].createdAt
        if (
            retry is not None
            and retry.allows(attempt.number + 1)
            and self.status.state in ACTIVE
            and (retry.maxDuration is None or event.at - first_start < retry.maxDuration)
        ):
            tr.set_state(State.RETRYING, event.at)
            tr.retryAt = event.at + retry.delay_before(attempt.number + 1)
            return
        self._fail_taskrun(tr, task, attempt.reason, event.at)

    def _on_child_finished(self, event: ChildFinished) -> None:
        tr = self.status.taskrun(event.taskRunId)
        if tr is None or tr.state.terminal:
            return
        task = self.flow.task(tr.taskId)
        if not isinstance(task, Subflow):
            return
        self.touched = True
        tr.outputs = {"executionId": tr.child, "state": event.state.value, "outputs": event.outputs}
        if event.state.failed and task.transmitFailed:
            self._fail_taskrun(tr, task, f"subflow execution {tr.child} ended {event.state.value}", event.at)
        elif event.state == State.WARNING:
            self._finish_taskrun(tr, State.WARNING, event.at)
        else:
            self._finish_taskrun(tr, State.SUCCESS, event.at)

    def _on_kill(self, event: Kill) -> None:
        if self.status.state.terminal:
            return
        self.touched = True
        self.status.set_state(State.KILLING, event.at)
        self._stop_everything(event.at)
        self._end_execution(State.KILLED, event.at, "killed")

    def _stop_everything(self, at: datetime) -> None:
        """Stop every attempt and child execution under way; their task runs end KILLED."""
        event = Tick(at=at)
        for tr in self.status.taskRuns:
            if tr.state.terminal:
                continue
            for attempt in tr.attempts:
                if not attempt.state.terminal:
                    attempt.state = State.KILLED
                    attempt.endedAt = event.at
                    attempt.reason = "killed"
                    attempt.closedIn = self.n
                    self.actions.append(StopTask(taskRunId=tr.id, attempt=attempt.number))
            if tr.child:
                self.actions.append(KillSubflow(taskRunId=tr.id, name=tr.child))
            tr.retryAt = None
            self._finish_taskrun(tr, State.KILLED, event.at)

    def _on_tick(self, event: Tick) -> None:
        return  # time is `now`: drive() starts what is due

    @staticmethod
    def _where(attempt: Attempt, event: _AttemptEvent) -> None:
        attempt.scheduledAt = attempt.scheduledAt or event.scheduledAt
        attempt.pod, attempt.node = event.pod or attempt.pod, event.node or attempt.node

    def _live_attempt(self, taskrun_id: str, number: int) -> tuple[TaskRun, Attempt | None]:
        tr = self.status.taskrun(taskrun_id)
        if tr is None or tr.state.terminal or not tr.attempts:
            return tr, None  # type: ignore[return-value]
        attempt = tr.attempts[-1]
        if attempt.number != number or attempt.state.terminal:
            return tr, None
        return tr, attempt

    # -- driving: start what should run next ----------------------------------------------------------

    def drive(self) -> None:
        if self.status.state not in ACTIVE:
            return
        if self._sla_exceeded():
            return
        for _ in range(100):  # executor-side tasks can complete at once; settle them
            before = (len(self.status.taskRuns), len(self.finished), self.status.state)
            self._drive_flow()
            if (len(self.status.taskRuns), len(self.finished), self.status.state) == before:
                break
        self._paused_or_running()

    def _paused_or_running(self) -> None:
        """Kestra's execution is PAUSED while one of its task runs is, RUNNING otherwise."""
        if self.status.state not in ACTIVE:
            return
        paused = any(tr.state == State.PAUSED for tr in self.status.taskRuns)
        wanted = State.PAUSED if paused else State.RUNNING
        if self.status.state != wanted:
            self.status.set_state(wanted, self.now)
            self.touched = True

    def _drive_flow(self) -> None:
        if self.status.state not in ACTIVE:
            return
        main = self._drive_list(self.flow.tasks, None, None)
        if main == State.RUNNING:
            return
        if main.failed and self.flow.errors and self._drive_list(self.flow.errors, None, None) == State.RUNNING:
            return
        closing = self._drive_list(self.flow.finally_, None, None) if self.flow.finally_ else State.SUCCESS
        if closing == State.RUNNING:
            return
        if main.failed:
            final = main
        elif closing.failed:
            final = State.FAILED
        elif State.WARNING in (main, closing):
            final = State.WARNING
        else:
            final = State.SUCCESS
        reason = self._first_failure() if final.failed else None
        if not final.failed and self.flow.outputs:
            try:
                context = render_context(self.flow, self.run, self.status, self.now)
                self.status.outputs = {
                    out.id: coerce(Input(id=out.id, type=out.type), render(out.value, context))
                    for out in self.flow.outputs
                }
            except RenderError as exc:
                final, reason = State.FAILED, f"flow output: {exc}"
            except ValueError as exc:
                final, reason = State.FAILED, f"flow output: {exc}"
        if not final.failed:
            final, reason = self._sla_assertions(final, reason)
        if self.flow.afterExecution and self._drive_list(self.flow.afterExecution, None, None) == State.RUNNING:
            return  # they run once the final state is known, and do not change it
        self._end_execution(final, self.now, reason)

    # -- service-level agreements ---------------------------------------------------------------------

    def _sla_deadlines(self) -> list[tuple[SLA, datetime]]:
        start = self.status.startDate or self.run.createdAt
        return [(sla, start + sla.duration) for sla in self.flow.sla if sla.type == "MAX_DURATION" and sla.duration]

    def _sla_exceeded(self) -> bool:
        """A MAX_DURATION SLA that passed ends the execution (FAIL: FAILED, CANCEL: CANCELLED; NONE: nothing)."""
        for sla, deadline in self._sla_deadlines():
            if sla.behavior != "NONE" and self.now >= deadline:
                self._stop_everything(self.now)
                state = State.CANCELLED if sla.behavior == "CANCEL" else State.FAILED
                self._end_execution(state, self.now, f"SLA '{sla.id}' violated: the execution ran longer than "
                                    f"{ids_duration(sla.duration)}")  # fmt: skip
                return True
        return False

    def _sla_assertions(self, final: State, reason: str | None) -> tuple[State, str | None]:
        """EXECUTION_ASSERTION SLAs are checked when the execution ends; a false one FAILs or CANCELs it."""
        for sla in self.flow.sla:
            if sla.type != "EXECUTION_ASSERTION" or sla.behavior == "NONE" or not sla.assert_:
                continue
            context = render_context(self.flow, self.run, self.status, self.now)
            try:
                holds = is_truthy(render_string(sla.assert_, context))
            except RenderError as exc:
                return State.FAILED, f"SLA '{sla.id}': {exc}"
            if not holds:
                state = State.CANCELLED if sla.behavior == "CANCEL" else State.FAILED
                return state, f"SLA '{sla.id}' violated: {sla.assert_} is false"
        return final, reason

    def _drive_list(self, tasks: Sequence[TaskBase], parent: TaskRun | None, value: str | None) -> State:
        """Run the tasks in order; return the list's state (RUNNING until all ended or one failed)."""
        result = State.SUCCESS
        for task in tasks:
            if task.disabled:
                continue
            tr = self._find(task, parent, value) or self._create_taskrun(task, parent, value)
            state = self._drive_task(task, tr)
            if not state.terminal:
                return State.RUNNING
            if state.failed:
                return State.KILLED if state == State.KILLED else State.FAILED
            if state == State.WARNING:
                result = State.WARNING
        return result

    def _drive_task(self, task: TaskBase, tr: TaskRun) -> State:
        if tr.state.terminal:
            return tr.state
        if task.runs_in_worker:
            self._drive_worker(task, tr)
        elif isinstance(task, Subflow):
            self._drive_subflow(task, tr)
        elif isinstance(task, Sequential):
            self._settle_flowable(task, tr, self._drive_list(task.tasks, tr, tr.value))
        elif isinstance(task, Parallel):
            self._drive_parallel(task, tr)
        elif isinstance(task, If | Switch):
            self._drive_branch(task, tr)
        elif isinstance(task, Each):
            self._drive_foreach(task, tr)
        elif isinstance(task, Dag):
            self._drive_dag(task, tr)
        elif isinstance(task, Pause):
            self._drive_pause(task, tr)
        return tr.state

    def _drive_pause(self, task: Pause, tr: TaskRun) -> None:
        """PAUSED for the rendered duration; then RESUME runs its tasks, WARN, CANCEL or FAIL end it so."""
        if tr.branch is None:
            context = render_context(self.flow, self.run, self.status, self.now, task, tr)
            try:
                text = render_string(task.duration or "", context)
                duration = PAUSE_DURATION.validate_python(text.strip().upper())
            except RenderError as exc:
                self._fail_taskrun(tr, task, str(exc), self.now)
                return
            except ValidationError:
                self._fail_taskrun(tr, task, f"pauseDuration '{text}' is not an ISO-8601 duration", self.now)
                return
            tr.branch = "paused"
            tr.retryAt = self.now + duration
            tr.set_state(State.PAUSED, self.now)
            self.touched = True
        if tr.state == State.PAUSED:
            if tr.retryAt is not None and self.now < tr.retryAt:
                return
            tr.retryAt = None
            tr.branch = "resumed"
            tr.set_state(State.RUNNING, self.now)
            self.touched = True
            if task.behavior == "FAIL":
                self._fail_taskrun(tr, task, "the pause ended (behavior FAIL)", self.now)
                return
            if task.behavior == "CANCEL":
                self._finish_taskrun(tr, State.CANCELLED, self.now)
                return
            if task.behavior == "WARN":
                self._finish_taskrun(tr, State.WARNING, self.now)
                return
        self._settle_flowable(task, tr, self._drive_list(task.tasks, tr, tr.value))

    def _drive_worker(self, task: TaskBase, tr: TaskRun) -> None:
        if tr.attempts and not tr.attempts[-1].state.terminal:
            return
        if tr.state == State.CREATED and not tr.attempts:
            self._create_attempt(task, tr, 1)
        elif tr.state == State.RETRYING and tr.retryAt is not None and self.now >= tr.retryAt:
            self._create_attempt(task, tr, tr.attempts[-1].number + 1)

    def _create_attempt(self, task: TaskBase, tr: TaskRun, number: int) -> None:
        action = self.run_action(task, tr, number)
        if isinstance(action, str):
            self._fail_taskrun(tr, task, action, self.now)
            return
        tr.retryAt = None
        tr.attempts.append(Attempt(number=number, createdAt=self.now))
        self.created.append(f"{tr.taskId}#{number}")
        self.actions.append(action)

    def run_action(self, task: TaskBase, tr: TaskRun, number: int) -> RunTask | str:
        """The RunTask for an attempt, or the rendering error that prevents it."""
        raw = task.model_dump(mode="json", by_alias=True, exclude_none=True, exclude=WORKER_FIELDS_EXCLUDED)
        context = render_context(self.flow, self.run, self.status, self.now, task, tr, attempt=number)
        try:
            rendered = render(raw, context)
        except RenderError as exc:
            return str(exc)
        timeout = task.timeout.total_seconds() if task.timeout else None
        work = WorkItem(
            executionId=self.run.id,
            namespace=self.flow.namespace,
            flowId=self.flow.id,
            taskRunId=tr.id,
            taskId=task.id,
            attempt=number,
            taskType=task.kind,
            task={"id": task.id, "type": task.kind, **rendered},
            value=tr.value,
            timeoutSeconds=timeout,
        )
        image = task.containerImage if isinstance(task, Shell | Python) else None
        return RunTask(
            work=work,
            traceparent=traceparent_of(self.run, attempt_span_id(self.run, tr.id, number)),
            tracestate=self.run.tracestate,
            baggage=self.run.baggage,
            containerImage=image,
            timeoutSeconds=timeout,
        )

    def _drive_subflow(self, task: Subflow, tr: TaskRun) -> None:
        if tr.child:
            return
        action = self.subflow_action(task, tr)
        if isinstance(action, str):
            self._fail_taskrun(tr, task, action, self.now)
            return
        tr.child = action.name
        tr.outputs = {"executionId": action.name}
        tr.set_state(State.RUNNING, self.now)
        self.created.append(f"{tr.taskId}->{action.name}")
        self.actions.append(action)
        if not task.wait:
            self._finish_taskrun(tr, State.SUCCESS, self.now)

    def subflow_action(self, task: Subflow, tr: TaskRun) -> StartSubflow | str:
        context = render_context(self.flow, self.run, self.status, self.now, task, tr)
        try:
            inputs = render(task.inputs, context)
            labels = {str(k): str(v) for k, v in render(task.labels, context).items()}
            if task.inheritLabels:
                labels = {**self.flow.labels, **self.run.labels, **labels}
        except RenderError as exc:
            return str(exc)
        return StartSubflow(
            taskRunId=tr.id,
            name=tr.child or child_name(self.run, tr, task.flowId),
            namespace=task.namespace,
            flowId=task.flowId,
            inputs=inputs,
            labels=labels,
            traceparent=traceparent_of(self.run, taskrun_span_id(self.run, tr.id)),
        )

    def _drive_parallel(self, task: Parallel, tr: TaskRun) -> None:
        children = [child for child in task.tasks if not child.disabled]
        states: dict[str, State] = {}
        for child in children:
            existing = self._find(child, tr, tr.value)
            if existing is not None:
                states[child.id] = self._drive_task(child, existing)
        for child in children:
            if child.id in states:
                continue
            running = sum(1 for s in states.values() if not s.terminal)
            if any(s.failed for s in states.values()) or (task.concurrency and running >= task.concurrency):
                break
            states[child.id] = self._drive_task(child, self._create_taskrun(child, tr, tr.value))
        self._settle_flowable(task, tr, self._join(states.values(), complete=len(states) == len(children)))

    def _drive_dag(self, task: Dag, tr: TaskRun) -> None:
        """Start each task once every task it depends on succeeded; at most `concurrent` at once (0: all)."""
        entries = [entry for entry in task.tasks if not entry.task.disabled]
        enabled = {entry.task.id for entry in entries}
        states: dict[str, State] = {}
        for entry in entries:
            existing = self._find(entry.task, tr, tr.value)
            if existing is not None:
                states[entry.task.id] = self._drive_task(entry.task, existing)
        for entry in entries:
            if entry.task.id in states or any(s.failed for s in states.values()):
                continue
            running = sum(1 for s in states.values() if not s.terminal)
            if task.concurrent and running >= task.concurrent:
                break
            deps = [dep for dep in entry.dependsOn if dep in enabled]
            if all(dep in states and states[dep].terminal and not states[dep].failed for dep in deps):
                states[entry.task.id] = self._drive_task(entry.task, self._create_taskrun(entry.task, tr, tr.value))
        self._settle_flowable(task, tr, self._join(states.values(), complete=len(states) == len(entries)))

    def _drive_branch(self, task: If | Switch, tr: TaskRun) -> None:
        if tr.branch is None:
            context = render_context(self.flow, self.run, self.status, self.now, task, tr)
            try:
                if isinstance(task, If):
                    tr.branch = "then" if is_truthy(render_string(task.condition, context)) else "else"
                    tr.outputs = {"branch": tr.branch}
                else:
                    value = render_string(task.value, context)
                    tr.branch = f"case:{value}" if value in task.cases else "defaults"
                    tr.outputs = {"value": value}
            except RenderError as exc:
                self._fail_taskrun(tr, task, str(exc), self.now)
                return
        if isinstance(task, If):
            tasks = task.then if tr.branch == "then" else task.else_
        else:
            tasks = (
                task.cases.get(tr.branch.removeprefix("case:"), [])
                if tr.branch.startswith("case:")
                else (task.defaults)
            )
        self._settle_flowable(task, tr, self._drive_list(tasks, tr, tr.value))

    def _drive_foreach(self, task: Each, tr: TaskRun) -> None:
        if tr.iterations is None:
            try:
                tr.iterations = self._foreach_values(task, tr)
            except (RenderError, ValueError) as exc:
                self._fail_taskrun(tr, task, str(exc), self.now)
                return
        states: list[State] = []
        for value in tr.iterations:
            if (tr.id, value) in self.scopes:
                states.append(self._drive_list(task.tasks, tr, value))
        for value in tr.iterations:
            if (tr.id, value) in self.scopes:
                continue
            running = sum(1 for s in states if not s.terminal)
            limit = task.each_limit()
            if any(s.failed for s in states) or (limit and running >= limit):
                break
            states.append(self._drive_list(task.tasks, tr, value))
        self._settle_flowable(task, tr, self._join(states, complete=len(states) == len(tr.iterations)))

    def _foreach_values(self, task: Each, tr: TaskRun) -> list[str]:
        context = render_context(self.flow, self.run, self.status, self.now, task, tr)
        source = task.each_values()
        if isinstance(source, str):
            text = render_string(source, context)
            try:
                values = json.loads(text)
            except json.JSONDecodeError:
                raise ValueError(f"ForEach values must render to a JSON list; got '{text[:100]}'") from None
        else:
            values = render(source, context)
        if not isinstance(values, list):
            raise ValueError(f"ForEach values must be a list, not {type(values).__name__}")
        if any(v is None for v in values):
            raise ValueError("ForEach values must not contain null")
        as_text = [v if isinstance(v, str) else json.dumps(v, separators=(",", ":")) for v in values]
        if len(set(as_text)) != len(as_text):
            raise ValueError("ForEach values must be distinct")
        return as_text

    @staticmethod
    def _join(states: Any, complete: bool) -> State:
        states = list(states)
        if any(not s.terminal for s in states):
            return State.RUNNING
        if any(s == State.KILLED for s in states):
            return State.KILLED
        if any(s.failed for s in states):
            return State.FAILED
        if not complete:
            return State.RUNNING
        return State.WARNING if State.WARNING in states else State.SUCCESS

    # -- bookkeeping ----------------------------------------------------------------------------------

    def _find(self, task: TaskBase, parent: TaskRun | None, value: str | None) -> TaskRun | None:
        return self.index.get((task.id, parent.id if parent else None, value))

    def _create_taskrun(self, task: TaskBase, parent: TaskRun | None, value: str | None) -> TaskRun:
        parent_id = parent.id if parent else None
        tr = TaskRun(
            id=taskrun_id(self.run, task.id, parent_id, value),
            taskId=task.id,
            parentId=parent_id,
            value=value,
            createdIn=self.n,
        )
        tr.set_state(State.CREATED, self.now)
        if not task.runs_in_worker:
            tr.set_state(State.RUNNING, self.now)
        self.status.taskRuns.append(tr)
        self.index[(task.id, parent_id, value)] = tr
        self.scopes.add((parent_id, value))
        self.created.append(tr.taskId if value is None else f"{tr.taskId}[{value}]")
        self.touched = True
        if task.runIf is not None:
            self._run_if(task, tr)
        return tr

    def _run_if(self, task: TaskBase, tr: TaskRun) -> None:
        """Kestra's runIf: a condition that renders false skips the task run (SKIPPED)."""
        context = render_context(self.flow, self.run, self.status, self.now, task, tr)
        try:
            run = is_truthy(render_string(task.runIf or "", context))
        except RenderError as exc:
            self._fail_taskrun(tr, task, f"runIf: {exc}", self.now)
            return
        if not run:
            self._finish_taskrun(tr, State.SKIPPED, self.now)

    def _settle_flowable(self, task: Flowable, tr: TaskRun, state: State) -> None:
        """A flowable's own `errors` run when its tasks failed, then its `finally`; it ends as its tasks did
        (FAILED even when `errors` succeeded), or FAILED if `finally` failed."""
        if not state.terminal:
            return
        if state.failed and state != State.KILLED and task.errors:
            handled = self._drive_list(task.errors, tr, tr.value)
            if not handled.terminal:
                return
        if task.finally_ and state != State.KILLED:
            closing = self._drive_list(task.finally_, tr, tr.value)
            if not closing.terminal:
                return
            if closing.failed and not state.failed:
                state = State.FAILED
            elif closing == State.WARNING and state == State.SUCCESS:
                state = State.WARNING
        self._settle(tr, state)

    def _settle(self, tr: TaskRun, state: State) -> None:
        if state.terminal:
            if state.failed:
                task = self.flow.task(tr.taskId)
                self._fail_taskrun(
                    tr, task, self._child_failure(tr) or "a nested task failed", self.now, killed=state == State.KILLED
                )
            else:
                self._finish_taskrun(tr, state, self.now)

    def _fail_taskrun(self, tr: TaskRun, task: TaskBase, reason: str, at: datetime, killed: bool = False) -> None:
        """Fail a task run for good (worker retries are decided where attempts end, not here)."""
        tr.error = reason
        if killed:
            self._finish_taskrun(tr, State.KILLED, at)
        else:
            self._finish_taskrun(tr, State.WARNING if task.allowFailure else State.FAILED, at)

    def _finish_taskrun(self, tr: TaskRun, state: State, at: datetime) -> None:
        if tr.state.terminal:
            return
        if state == State.WARNING and self.flow.task(tr.taskId).allowWarning:
            state = State.SUCCESS
        tr.set_state(state, at)
        tr.retryAt = None
        tr.closedIn = self.n
        self.finished.append(tr.taskId if tr.value is None else f"{tr.taskId}[{tr.value}]")
        self.touched = True

    def _child_failure(self, tr: TaskRun) -> str | None:
        for child in self.status.taskRuns:
            if child.parentId == tr.id and child.state.failed and child.error:
                return f"task '{child.taskId}' failed: {child.error}"
        return None

    def _first_failure(self) -> str | None:
        for tr in self.status.taskRuns:
            if tr.state.failed and tr.error and tr.parentId is None:
                return f"task '{tr.taskId}' failed: {tr.error}"
        return next((f"task '{tr.taskId}' failed: {tr.error}" for tr in self.status.taskRuns if tr.error), None)

    def _end_execution(self, state: State, at: datetime, reason: str | None) -> None:
        self.status.set_state(state, at)
        self.status.error = reason
        self.status.closedIn = self.n
        self.touched = True

    def decision(self, events: list[Any]) -> Decision:
        changed = self.touched or bool(self.created) or bool(self.finished)
        if changed:
            start = min((event.at for event in events), default=self.now)
            self.status.changes.append(
                Change(
                    n=self.n,
                    start=min(start, self.now),
                    end=self.now,
                    state=self.status.state,
                    cause=", ".join(dict.fromkeys(event.kind for event in events)) or "reconcile",
                    created=self.created,
                    finished=self.finished,
                )
            )
        waits = [tr.retryAt for tr in self.status.taskRuns if tr.state in WAITING and tr.retryAt]
        waits += [deadline for sla, deadline in self._sla_deadlines() if sla.behavior != "NONE"]
        wake = min(waits) if waits and not self.status.state.terminal else None
        return Decision(status=self.status, actions=self.actions, wakeAt=wake, changed=changed)
