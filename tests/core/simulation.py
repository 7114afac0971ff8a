"""A test driver for the pure executor: feeds events the way an adapter would and records every action."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flowpods.core.engine import AttemptFinished, KillSubflow, RunTask, Start, StartSubflow, StopTask, Tick, advance
from flowpods.core.model import Flow, parse_flow
from flowpods.core.status import RunInfo

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RUN = RunInfo(id="ex-1", uid="uid-1", namespace="company.team", flowId="f", createdAt=T0)


def make_flow(tasks: list[dict], **extra: Any) -> Flow:
    return parse_flow({"id": "f", "namespace": "company.team", "tasks": tasks, **extra})


def log(task_id: str, **extra: Any) -> dict:
    return {"id": task_id, "type": "Log", "message": task_id, **extra}


class Simulation:
    """Feeds an execution events the way an adapter would, recording every action."""

    def __init__(self, flow: Flow, inputs: dict | None = None, run: RunInfo = RUN):
        self.flow, self.run, self.now = flow, run, T0
        self.actions: list[Any] = []
        self.outstanding: dict[tuple[str, int], RunTask] = {}
        self.children: dict[str, StartSubflow] = {}
        decision = advance(flow, run, None, [Start(at=T0, inputs=inputs or {})], T0)
        self.status, self.wake = decision.status, decision.wakeAt
        self._record(decision.actions)

    def _record(self, actions: list[Any]) -> None:
        self.actions.extend(actions)
        for action in actions:
            if isinstance(action, RunTask):
                self.outstanding[(action.work.taskRunId, action.work.attempt)] = action
            elif isinstance(action, StartSubflow):
                self.children[action.taskRunId] = action
            elif isinstance(action, StopTask):
                self.outstanding.pop((action.taskRunId, action.attempt), None)
            elif isinstance(action, KillSubflow):
                self.children.pop(action.taskRunId, None)

    def send(self, *events: Any) -> None:
        self.now += timedelta(seconds=1)
        decision = advance(self.flow, self.run, self.status, list(events), self.now)
        self.status, self.wake = decision.status, decision.wakeAt
        self._record(decision.actions)

    def finish(self, task_id: str, success: bool = True, outputs: dict | None = None, **extra: Any) -> RunTask:
        action = next(a for a in self.outstanding.values() if a.work.taskId == task_id)
        del self.outstanding[(action.work.taskRunId, action.work.attempt)]
        self.send(
            AttemptFinished(
                at=self.now + timedelta(seconds=1),
                taskRunId=action.work.taskRunId,
                attempt=action.work.attempt,
                success=success,
                outputs=outputs or {},
                exitCode=0 if success else 1,
                **extra,
            )
        )
        return action

    def tick_to_wake(self) -> None:
        assert self.wake is not None
        self.now = max(self.now, self.wake)
        self.send(Tick(at=self.now))

    def running(self) -> list[str]:
        return sorted(a.work.taskId for a in self.outstanding.values())

    def taskruns(self, task_id: str) -> list:
        return [tr for tr in self.status.taskRuns if tr.taskId == task_id]
