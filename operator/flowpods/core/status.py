"""The stored state of an execution: what the Execution's `status` holds, and what spans derive from.

Everything here is plain data that survives a JSON round trip through the Kubernetes API, so that any
operator process, restarted at any moment, reads back the same facts and derives the same decisions.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flowpods.core.records import SpanRecord


class State(StrEnum):
    """Kestra's states."""

    CREATED = "CREATED"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    RETRYING = "RETRYING"
    PAUSED = "PAUSED"
    RESTARTED = "RESTARTED"
    KILLING = "KILLING"
    SUCCESS = "SUCCESS"
    WARNING = "WARNING"
    FAILED = "FAILED"
    KILLED = "KILLED"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"
    RETRIED = "RETRIED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def failed(self) -> bool:
        return self in (State.FAILED, State.KILLED, State.CANCELLED)


TERMINAL = frozenset(
    {State.SUCCESS, State.WARNING, State.FAILED, State.KILLED, State.CANCELLED, State.SKIPPED, State.RETRIED}
)


class Stored(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Transition(Stored):
    state: State
    at: datetime


class WithHistory(Stored):
    """A state with every transition and its time: start and end dates derive from it."""

    state: State = State.CREATED
    history: list[Transition] = Field(default_factory=list)

    @property
    def startDate(self) -> datetime | None:
        return self.history[0].at if self.history else None

    @property
    def endDate(self) -> datetime | None:
        return self.history[-1].at if self.history and self.state.terminal else None

    def set_state(self, state: State, at: datetime) -> None:
        if state != self.state or not self.history:
            self.state = state
            self.history.append(Transition(state=state, at=at))

    def generation(self, at: datetime | None = None) -> int:
        """How many times a restart reopened it (up to `at`): each reopening starts a new span of it."""
        return sum(1 for t in self.history if t.state == State.RESTARTED and (at is None or t.at <= at))

    def reopened_at(self) -> datetime | None:
        """When the latest restart reopened it."""
        return next((t.at for t in reversed(self.history) if t.state == State.RESTARTED), None)


class Attempt(Stored):
    """One try of a worker task: one pod (or one local process)."""

    number: int
    state: State = State.CREATED
    createdAt: datetime
    scheduledAt: datetime | None = None
    startedAt: datetime | None = None
    endedAt: datetime | None = None
    exitCode: int | None = None
    reason: str | None = Field(default=None, description="Why it failed: exit code, deadline, pod deleted ...")
    pod: str | None = None
    node: str | None = None
    closedIn: int | None = Field(default=None, description="The change that recorded its end")
    spans: list[SpanRecord] = Field(
        default_factory=list, description="The worker's spans it handed back with its result; exported with closedIn"
    )


class TaskRun(WithHistory):
    """One run of one task (one per ForEach value), with its attempts."""

    id: str
    taskId: str
    parentId: str | None = None
    value: str | None = None
    attempts: list[Attempt] = Field(default_factory=list)
    outputs: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    retryAt: datetime | None = None
    branch: str | None = Field(default=None, description="If/Switch: the branch taken")
    iterations: list[str] | None = Field(default=None, description="ForEach: the values iterated over")
    iteration: int | None = Field(default=None, description="WaitFor: the iteration (0, 1, ...) this task run is in")
    child: str | None = Field(default=None, description="Subflow: the child execution's name")
    closedIn: int | None = None


class Change(Stored):
    """One committed status change: the basis of one EXECUTOR span."""

    n: int
    start: datetime = Field(description="When what caused the change happened")
    end: datetime = Field(description="When the executor decided it")
    state: State
    cause: str
    created: list[str] = Field(default_factory=list, description="Task runs and attempts started")
    finished: list[str] = Field(default_factory=list, description="Task runs and attempts that ended")


class Control(Stored):
    """One execution control the operator acted on (an annotation value or an API call), and what it did."""

    control: str = Field(description="resume, restart")
    value: str = Field(description="The request's value: the same value is acted on once")
    at: datetime
    result: str = Field(description="What was done, or why nothing was")
    done: bool = True


class FrozenSpan(Stored):
    """A span completed before a restart reopened what it measured: kept as it was, exported with its change."""

    closedIn: int
    span: SpanRecord


class ExecutionStatus(WithHistory):
    """The whole stored state of one execution."""

    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] = Field(default_factory=dict)
    taskRuns: list[TaskRun] = Field(default_factory=list)
    changes: list[Change] = Field(default_factory=list)
    error: str | None = None
    closedIn: int | None = None
    exported: int = Field(default=0, description="Spans of changes up to this number were exported")
    controls: list[Control] = Field(default_factory=list, description="Resumes and restarts acted on")
    restarts: int = Field(default=0, description="How many times the execution was restarted")
    frozen: list[FrozenSpan] = Field(default_factory=list, description="Spans of what a restart reopened")

    def acted_on(self, control: str, value: str) -> bool:
        """Whether this request (control and value) was already handled: a repeated one is a no-op."""
        return any(c.control == control and c.value == value for c in self.controls)

    def taskrun(self, taskrun_id: str) -> TaskRun | None:
        return next((tr for tr in self.taskRuns if tr.id == taskrun_id), None)


class RunInfo(BaseModel):
    """What identifies an execution and never changes after it was created."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(description="The execution's name (the Execution resource's metadata.name)")
    uid: str = Field(description="A unique id (the resource's metadata.uid); all span ids derive from it")
    namespace: str = Field(description="The flow's namespace (Kestra sense)")
    flowId: str
    flowRevision: int | None = None
    k8sNamespace: str | None = None
    trigger: str = Field(default="kubectl", description="api, webhook, schedule, subflow, kubectl, local")
    triggerData: dict[str, Any] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    originalId: str | None = Field(default=None, description="A replay: the execution it replays")
    parentTraceparent: str | None = Field(default=None, description="Inbound W3C context, if any")
    tracestate: str | None = None
    baggage: str | None = Field(default=None, description="W3C baggage, handed on to worker pods as BAGGAGE")
    createdAt: datetime
