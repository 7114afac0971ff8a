"""The stored state of an execution: what the Execution's `status` holds, and what spans derive from.

Everything here is plain data that survives a JSON round trip through the Kubernetes API, so that any
operator process, restarted at any moment, reads back the same facts and derives the same decisions.
"""

from __future__ import annotations

import copy
import heapq
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum, StrEnum
from typing import Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FieldSerializationInfo,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import to_jsonable_python

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

    def copied(self) -> Self:
        """A deep copy, as `model_copy(deep=True)` but in a third of its time (the executor copies the status at
        every step: `copy.deepcopy`'s memo and dispatch were 3 % of the operator's CPU)."""
        copied: Self = stored_copy(self)
        return copied


_IMMUTABLE = (str, int, float, type(None), datetime, date, time, timedelta, Decimal, Enum)


def stored_copy(value: Any) -> Any:
    """Stored data copied down to what cannot change: text, numbers, dates, enums, and compacted task runs
    (ended long ago, shared as `TaskRun.__deepcopy__` shares them). A model's private attributes are caches
    (`ExecutionStatus._by_id`) and start empty; anything else is left to `copy.deepcopy`."""
    if isinstance(value, _IMMUTABLE):
        return value
    if isinstance(value, dict):
        return {key: stored_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [stored_copy(item) for item in value]
    if isinstance(value, BaseModel):
        if isinstance(value, TaskRun) and value.compact:
            return value
        copied = type(value).__new__(type(value))
        object.__setattr__(copied, "__dict__", {key: stored_copy(item) for key, item in value.__dict__.items()})
        object.__setattr__(copied, "__pydantic_extra__", stored_copy(value.__pydantic_extra__))
        object.__setattr__(copied, "__pydantic_fields_set__", set(value.__pydantic_fields_set__))
        private = value.__pydantic_private__
        if private is not None:
            private = {name: attribute.get_default() for name, attribute in type(value).__private_attributes__.items()}
        object.__setattr__(copied, "__pydantic_private__", private)
        return copied
    return copy.deepcopy(value)


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
    compact: bool = Field(default=False, exclude=True, description="Stored in the compact form (core/compaction.py)")
    attemptCount: int = Field(default=0, exclude=True, description="Compact: the attempts it had")

    @property
    def attempt_count(self) -> int:
        return self.attemptCount if self.compact else len(self.attempts)

    @model_validator(mode="before")
    @classmethod
    def _from_compact(cls, data: Any) -> Any:
        """A group of one compacted task run (see `expand_compact`) reads as that task run."""
        if isinstance(data, dict) and COMPACT_KEY in data:
            (data, *_) = expand_compact(data) or [data]
        return data

    @model_serializer(mode="wrap")
    def _stored(self, handler: SerializerFunctionWrapHandler) -> Any:
        """A compacted task run is stored as a group of one (ExecutionStatus merges neighbours), a full one as
        itself."""
        if not self.compact:
            return handler(self)
        return {COMPACT_KEY: [self.taskId, self.parentId, [self.compact_row("json")]]}

    def compact_row(self, mode: str) -> list[Any]:
        """`[id, value, state, attempts, {iteration, error, child, outputs}?]` (see COMPACT_KEY)."""
        row: list[Any] = [self.id, self.value, self.state.value, self.attemptCount]
        extra = {k: v for k, v in (("iteration", self.iteration), ("error", self.error), ("child", self.child),
                                   ("outputs", self.outputs)) if v not in (None, {})}  # fmt: skip
        if "outputs" in extra and mode == "json":
            extra["outputs"] = to_jsonable_python(extra["outputs"])
        return [*row, extra] if extra else row

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        """A compacted task run ended long ago and nothing changes it any more: copies share it (a status of
        10,000 of them is copied on every executor call)."""
        return self if self.compact else super().__deepcopy__(memo)


COMPACT_KEY = "c"
"""Compacted task runs in `status.taskRuns`, consecutive ones of one task and parent grouped:
`{"c": [taskId, parentId, [[id, value, state, attempts, {iteration, error, child, outputs}?], ...]]}`."""


def expand_compact(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The task runs of a group in the compact form, as fields (for the model and for readers of raw JSON);
    nothing for a malformed one."""
    group = data.get(COMPACT_KEY)
    if not isinstance(group, list) or len(group) != 3 or not isinstance(group[2], list):
        return []
    task_id, parent_id, rows = group
    runs = []
    for row in rows:
        if not isinstance(row, list) or len(row) < 4:
            continue
        extra = row[4] if len(row) > 4 and isinstance(row[4], dict) else {}
        fields = dict(zip(("id", "value", "state", "attemptCount"), row[:4], strict=True))
        runs.append({**extra, **fields, "taskId": task_id, "parentId": parent_id, "compact": True})
    return runs


def stored_task_runs(entries: Any) -> list[Any]:
    """`status.taskRuns` as stored, with its groups of compacted task runs expanded, one entry per task run."""
    if not isinstance(entries, list):
        return []
    expanded: list[Any] = []
    for entry in entries:
        if isinstance(entry, dict) and COMPACT_KEY in entry:
            expanded.extend(expand_compact(entry))
        else:
            expanded.append(entry)
    return expanded


class Folded(Stored):
    """What compaction kept of the changes it dropped (their spans were exported): counters."""

    changes: int = Field(default=0, description="Changes folded away")
    lastChange: int = Field(default=0, description="The number of the last one")
    created: int = Field(default=0, description="Those that created task runs or attempts")
    taskRuns: int = Field(default=0, description="Task runs stored in the compact form")


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
    folded: Folded = Field(default_factory=Folded)
    _by_id: _Index | None = PrivateAttr(default=None)

    triggered: list[str] | Literal["pending"] | None = Field(
        default=None,
        description="Flow triggers: `pending` until its end fired them, then the executions it started, stored "
        "once all were created (None: stored by an operator without Flow triggers, never fired)",
    )
    controls: list[Control] = Field(default_factory=list, description="Resumes and restarts acted on")
    restarts: int = Field(default=0, description="How many times the execution was restarted")
    frozen: list[FrozenSpan] = Field(default_factory=list, description="Spans of what a restart reopened")

    @field_validator("taskRuns", mode="before")
    @classmethod
    def _expand(cls, value: Any) -> Any:
        return stored_task_runs(value) if isinstance(value, list) else value

    @field_serializer("taskRuns", mode="wrap")
    def _group(self, value: list[TaskRun], handler: SerializerFunctionWrapHandler, info: FieldSerializationInfo) -> Any:
        """Compacted task runs in groups (`COMPACT_KEY`), written here in one loop: through pydantic, one call per
        task run made a status of 10,000 take seconds to write."""
        if not self.folded.taskRuns:
            return handler(value)
        dumped: list[Any] = []
        group: list[Any] | None = None
        for tr in value:
            if not tr.compact:
                dumped.append(tr.model_dump(mode=info.mode))
                group = None
                continue
            if group is None or group[0] != tr.taskId or group[1] != tr.parentId:
                group = [tr.taskId, tr.parentId, []]
                dumped.append({COMPACT_KEY: group})
            group[2].append(tr.compact_row(info.mode))
        return dumped

    @property
    def last_change(self) -> int:
        """The number of the newest change (the next one is one more), folded or not."""
        return self.changes[-1].n if self.changes else self.folded.lastChange

    def __eq__(self, other: object) -> bool:
        """Equal when the stored fields are (the index is not part of the state)."""
        if not isinstance(other, ExecutionStatus):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]

    def acted_on(self, control: str, value: str) -> bool:
        """Whether this request (control and value) was already handled: a repeated one is a no-op."""
        return any(c.control == control and c.value == value for c in self.controls)

    def taskrun(self, taskrun_id: str) -> TaskRun | None:
        return self._index().by_id.get(taskrun_id)

    def with_outputs(self) -> list[TaskRun]:
        """The task runs that have outputs, in order; compacted ones (which never change) come from the index,
        so that rendering reads the few live ones and not 10,000 ended ones."""
        index = self._index()
        live = [(i, self.taskRuns[i]) for i in index.live if self.taskRuns[i].outputs]
        if not index.compact_outputs:
            return [tr for _, tr in live]
        return [tr for _, tr in heapq.merge(index.compact_outputs, live, key=lambda pair: pair[0])]

    def _index(self) -> _Index:
        """An index beside the list of task runs: the executor only appends to it, and a new list (a copy, a
        compaction) is indexed afresh."""
        runs, index = self.taskRuns, self._by_id
        if index is None or index.runs is not runs or index.seen > len(runs):
            index = self._by_id = _Index(runs)
        for position in range(index.seen, len(runs)):
            tr = runs[position]
            index.by_id.setdefault(tr.id, tr)
            if not tr.compact:
                index.live.append(position)
            elif tr.outputs:
                index.compact_outputs.append((position, tr))
        index.seen = len(runs)
        return index


@dataclass
class _Index:
    runs: list[TaskRun]
    seen: int = 0
    by_id: dict[str, TaskRun] = field(default_factory=dict)
    live: list[int] = field(default_factory=list)
    compact_outputs: list[tuple[int, TaskRun]] = field(default_factory=list)


class RunInfo(BaseModel):
    """What identifies an execution and never changes after it was created."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(description="The execution's name (the Execution resource's metadata.name)")
    uid: str = Field(description="A unique id (the resource's metadata.uid); all span ids derive from it")
    namespace: str = Field(description="The flow's namespace (Kestra sense)")
    flowId: str
    flowRevision: int | None = None
    k8sNamespace: str | None = None
    trigger: str = Field(default="kubectl", description="api, webhook, schedule, subflow, flow, kubectl, local")
    triggerId: str | None = Field(default=None, description="The id of the flow's trigger that started it")
    triggerData: dict[str, Any] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    originalId: str | None = Field(default=None, description="A replay: the execution it replays")
    parentTraceparent: str | None = Field(default=None, description="Inbound W3C context, if any")
    tracestate: str | None = None
    baggage: str | None = Field(default=None, description="W3C baggage, handed on to worker pods as BAGGAGE")
    links: list[str] = Field(
        default_factory=list, description="W3C contexts its RUN span links to (the execution that triggered it)"
    )
    createdAt: datetime
