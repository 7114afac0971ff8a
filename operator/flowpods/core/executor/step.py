"""One step of an execution: the status being rewritten, and the record of what the step did.

A step starts from a copy of the stored status. Transitions and drivers change it only through the
methods here, which also note what was created and finished (for the change's EXECUTOR span) and the
actions the adapters must take; `decision` closes the step with one `Change`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from flowpods.core import ids
from flowpods.core.controls import MAX_CONTROLS
from flowpods.core.executor.messages import Action, Decision, EventBase, KillSubflow, StopTask
from flowpods.core.executor.rules import allowed_warning, failed_state
from flowpods.core.model import SLA, Flow, TaskBase
from flowpods.core.status import Change, Control, ExecutionStatus, RunInfo, State, TaskRun

ACTIVE = (State.RUNNING, State.PAUSED)  # an execution that still drives its tasks

ScopeKey = tuple[str | None, str | None]  # (parent task-run id, ForEach value): where task runs are created


class Step:
    def __init__(self, flow: Flow, run: RunInfo, status: ExecutionStatus, now: datetime):
        self.flow, self.run, self.status, self.now = flow, run, status, now
        self.n = status.last_change + 1
        self.actions: list[Action] = []
        self.created: list[str] = []
        self.finished: list[str] = []
        self.touched = False
        self._index = {(tr.taskId, tr.parentId, tr.value, tr.iteration): tr for tr in status.taskRuns}
        self._scopes: set[ScopeKey] = {(tr.parentId, tr.value) for tr in status.taskRuns}

    # -- task runs --------------------------------------------------------------------------------------

    def find(
        self, task: TaskBase, parent: TaskRun | None, value: str | None, iteration: int | None = None
    ) -> TaskRun | None:
        return self._index.get((task.id, parent.id if parent else None, value, iteration))

    def started(self, parent: TaskRun, value: str | None) -> bool:
        """Whether any task run was created under this parent and value (a fan-out's branch has begun)."""
        return (parent.id, value) in self._scopes

    def create_taskrun(
        self, task: TaskBase, parent: TaskRun | None, value: str | None, iteration: int | None = None
    ) -> TaskRun:
        parent_id = parent.id if parent else None
        tr = TaskRun(id=ids.taskrun_id(self.run, task.id, parent_id, value, iteration), taskId=task.id,
                     parentId=parent_id, value=value, iteration=iteration)  # fmt: skip
        tr.set_state(State.CREATED, self.now)
        if not task.runs_in_worker:
            tr.set_state(State.RUNNING, self.now)
        self.status.taskRuns.append(tr)
        self._index[(task.id, parent_id, value, iteration)] = tr
        self._scopes.add((parent_id, value))
        self.created.append(_label(tr))
        self.touched = True
        return tr

    def adopt(self, tr: TaskRun) -> None:
        """Take in a task run that ended elsewhere (a replay's copy): found by the walk, never run again."""
        self.status.taskRuns.append(tr)
        self._index[(tr.taskId, tr.parentId, tr.value, tr.iteration)] = tr
        self._scopes.add((tr.parentId, tr.value))
        self.touched = True

    def finish_taskrun(self, tr: TaskRun, state: State, at: datetime) -> None:
        if tr.state.terminal:
            return
        state = allowed_warning(self.flow.task(tr.taskId), state)
        tr.set_state(state, at)
        tr.retryAt = None
        tr.closedIn = self.n
        self.finished.append(_label(tr))
        self.touched = True

    def fail_taskrun(self, tr: TaskRun, task: TaskBase, reason: str, at: datetime, killed: bool = False) -> None:
        """Fail a task run for good (worker retries are decided where attempts end, not here)."""
        tr.error = reason
        self.finish_taskrun(tr, failed_state(task, killed), at)

    def settle(self, tr: TaskRun, state: State) -> None:
        """End an executor-side task run once what it drives has ended."""
        if not state.terminal:
            return
        if state.failed:
            task = self.flow.task(tr.taskId)
            reason = self.child_failure(tr) or "a nested task failed"
            self.fail_taskrun(tr, task, reason, self.now, killed=state == State.KILLED)
        else:
            self.finish_taskrun(tr, state, self.now)

    def child_failure(self, tr: TaskRun) -> str | None:
        for child in self.status.taskRuns:
            if child.parentId == tr.id and child.state.failed and child.error:
                return f"task '{child.taskId}' failed: {child.error}"
        return None

    def first_failure(self) -> str | None:
        for tr in self.status.taskRuns:
            if tr.state.failed and tr.error and tr.parentId is None:
                return f"task '{tr.taskId}' failed: {tr.error}"
        return next((f"task '{tr.taskId}' failed: {tr.error}" for tr in self.status.taskRuns if tr.error), None)

    def stop_everything(self, at: datetime) -> None:
        """Stop every attempt and child execution under way; their task runs end KILLED."""
        for tr in self.status.taskRuns:
            if tr.state.terminal:
                continue
            for attempt in tr.attempts:
                if not attempt.state.terminal:
                    attempt.state = State.KILLED
                    attempt.endedAt = at
                    attempt.reason = "killed"
                    attempt.closedIn = self.n
                    self.actions.append(StopTask(taskRunId=tr.id, attempt=attempt.number))
            if tr.child:
                self.actions.append(KillSubflow(taskRunId=tr.id, name=tr.child))
            tr.retryAt = None
            self.finish_taskrun(tr, State.KILLED, at)

    # -- the execution --------------------------------------------------------------------------------

    def record_control(self, control: str, value: str, at: datetime, result: str, done: bool = True) -> None:
        """Record a control request and what it did, so that the same request is never acted on twice."""
        self.status.controls.append(Control(control=control, value=value, at=at, result=result, done=done))
        del self.status.controls[:-MAX_CONTROLS]
        self.touched = True

    def end_execution(self, state: State, at: datetime, reason: str | None) -> None:
        self.status.set_state(state, at)
        self.status.error = reason
        self.status.closedIn = self.n
        self.touched = True

    def decision(self, events: Sequence[EventBase]) -> Decision:
        """Close the step: one Change if anything changed, and when to be called again for a due retry."""
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
        waits = [tr.retryAt for tr in self.status.taskRuns if not tr.state.terminal and tr.retryAt]
        waits += [deadline for _, deadline in sla_deadlines(self.flow, self.status, self.run)]
        wake = min(waits) if waits and not self.status.state.terminal else None
        return Decision(status=self.status, actions=self.actions, wakeAt=wake, changed=changed)


def sla_deadlines(flow: Flow, status: ExecutionStatus, run: RunInfo) -> list[tuple[SLA, datetime]]:
    """The MAX_DURATION SLAs that act (behavior FAIL or CANCEL) and when they are exceeded."""
    start = status.startDate or run.createdAt
    return [
        (sla, start + sla.duration)
        for sla in flow.sla
        if sla.type == "MAX_DURATION" and sla.duration is not None and sla.behavior != "NONE"
    ]


def _label(tr: TaskRun) -> str:
    return tr.taskId if tr.value is None else f"{tr.taskId}[{tr.value}]"
