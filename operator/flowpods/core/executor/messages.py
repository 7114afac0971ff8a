"""The executor's boundary: events in (what the adapters observed), actions and a decision out.

Events and actions are pydantic models discriminated by `kind`, so they serialise unchanged and an
adapter can replay a recorded history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from flowpods.core.records import SpanRecord, WorkItem
from flowpods.core.status import ExecutionStatus, State, TaskRun
from flowpods.core.workdir import Step

# --- events: what the adapters observed ----------------------------------------------------------------


class EventBase(BaseModel):
    kind: str
    at: datetime


class Start(EventBase):
    """Start the execution: resolve inputs, then run (or queue behind the flow's concurrency limit)."""

    kind: Literal["start"] = "start"
    inputs: dict[str, Any] = Field(default_factory=dict)
    queued: bool = False
    seed: list[TaskRun] = Field(default_factory=list, description="A replay: the original's task runs it starts with")


class Admit(EventBase):
    """A queued execution may run now."""

    kind: Literal["admit"] = "admit"


class AttemptEvent(EventBase):
    """What a pod (or process) says about one attempt, and where it ran."""

    taskRunId: str
    attempt: int
    pod: str | None = None
    node: str | None = None
    scheduledAt: datetime | None = None


class AttemptStarted(AttemptEvent):
    kind: Literal["attempt-started"] = "attempt-started"


class AttemptFinished(AttemptEvent):
    kind: Literal["attempt-finished"] = "attempt-finished"
    success: bool
    outputs: dict[str, Any] = Field(default_factory=dict)
    reason: str | None = None
    exitCode: int | None = None
    startedAt: datetime | None = None
    timedOut: bool = False
    spans: list[SpanRecord] = Field(default_factory=list, description="The worker's spans, from its result")
    imageUnavailable: bool = Field(
        default=False, description="The image could not be pulled: the pod would wait forever, so it is deleted"
    )
    pendingTimedOut: bool = Field(
        default=False, description="The pod did not start within its pending timeout: it is deleted"
    )


class StepReported(EventBase):
    """A WorkingDirectory's pod says one of its steps started, or ended (`finished`, about the step's task run)."""

    kind: Literal["step-reported"] = "step-reported"
    taskRunId: str = Field(description="The WorkingDirectory's task run")
    attempt: int = Field(description="Its attempt: the pod")
    step: int = Field(ge=0, description="The index of the step among its enabled tasks")
    startedAt: datetime
    pod: str | None = None
    node: str | None = None
    scheduledAt: datetime | None = None
    finished: AttemptFinished | None = None


class ChildFinished(EventBase):
    kind: Literal["child-finished"] = "child-finished"
    taskRunId: str
    state: State
    outputs: dict[str, Any] = Field(default_factory=dict)
    error: str | None = Field(default=None, description="The child's reason, when it failed")


class Kill(EventBase):
    kind: Literal["kill"] = "kill"


class Resume(EventBase):
    """Resume the paused task runs (a request named by `value`, acted on once), with their onResume inputs."""

    kind: Literal["resume"] = "resume"
    value: str
    inputs: dict[str, Any] = Field(default_factory=dict)


class Restart(EventBase):
    """Restart a failed execution from its failed task runs (a request named by `value`, acted on once)."""

    kind: Literal["restart"] = "restart"
    value: str


class Tick(EventBase):
    """Time passed (a retry may be due)."""

    kind: Literal["tick"] = "tick"


Event = Annotated[
    Start | Admit | AttemptStarted | AttemptFinished | StepReported | ChildFinished | Kill | Resume | Restart | Tick,
    Field(discriminator="kind"),
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
    steps: list[Step] | None = Field(default=None, description="A WorkingDirectory: the steps its one pod runs")


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
