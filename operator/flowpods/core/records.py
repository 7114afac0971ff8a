"""Plain data exchanged between the core and its adapters: a task run handed to a worker, and a span.

These are the boundaries where the pure core meets processes (worker pods, local subprocesses) and the
OpenTelemetry exporter, so they are pydantic models that serialise to JSON unchanged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TERMINATION_LOG_ENV = "FLOWPODS_TERMINATION_LOG"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
TASKRUN_ENV = "FLOWPODS_TASKRUN"
TASKRUN_FILE_ENV = "FLOWPODS_TASKRUN_FILE"
OUTPUTS_ENV = "FLOWPODS_OUTPUTS"
SPAN_FILE_ENV = "FLOWPODS_SPAN_FILE"
STEP_ENV = "FLOWPODS_STEP"
"""The environment variable holding one step (JSON) in a WorkingDirectory's pod."""
WORKDIR_ENV = "FLOWPODS_WORKDIR"
"""The shared working directory: script tasks and LocalFiles use it instead of a directory of their own."""
RESULTS_ENV = "FLOWPODS_STEP_RESULTS"
"""Where each step leaves its outputs for the steps after it (one `<index>.json` per step)."""
MAX_TERMINATION_MESSAGE = 4096
WORKER_SERVICE = "flowpods-worker"  # service.name of every worker


class WorkItem(BaseModel):
    """One rendered task-run attempt, as the worker receives it (env FLOWPODS_TASKRUN or a file)."""

    model_config = ConfigDict(extra="forbid")

    executionId: str
    namespace: str
    flowId: str
    taskRunId: str
    taskId: str
    attempt: int = Field(ge=1)
    taskType: str = Field(description="The canonical Kestra type name, e.g. io.kestra.plugin.core.log.Log")
    task: dict[str, Any] = Field(description="The task's properties, already rendered by the executor")
    value: str | None = Field(default=None, description="The ForEach value of this task run, if any")
    timeoutSeconds: float | None = None


class TaskResult(BaseModel):
    """What a worker reports back through the termination message (at most 4 KiB of JSON)."""

    model_config = ConfigDict(extra="forbid")

    outputs: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    endedAt: datetime | None = Field(
        default=None, description="When the task ended, precisely: pod timestamps only have whole seconds"
    )
    spans: list[SpanRecord] = Field(
        default_factory=list,
        description="The worker's own finished spans (WORKER, HTTP CLIENT) that fit: the operator exports them",
    )


class SpanEvent(BaseModel):
    name: str
    time: datetime
    attributes: dict[str, Any] = Field(default_factory=dict)


class SpanLink(BaseModel):
    """A link to a span of another trace (a triggered execution's RUN span to the RUN span that triggered it)."""

    trace_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    span_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    sampled: bool = True
    attributes: dict[str, Any] = Field(default_factory=dict)


class SpanRecord(BaseModel):
    """A finished span with chosen ids and times: derived by the core, or read back from a worker."""

    name: str
    trace_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    span_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    parent_span_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{16}$")
    kind: Literal["INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"] = "INTERNAL"
    start: datetime
    end: datetime
    attributes: dict[str, Any] = Field(default_factory=dict)
    events: list[SpanEvent] = Field(default_factory=list)
    links: list[SpanLink] = Field(default_factory=list)
    status: Literal["UNSET", "OK", "ERROR"] = "UNSET"
    status_message: str | None = None
    service: str | None = Field(default=None, description="service.name of the process that recorded it")
    resource: dict[str, Any] = Field(
        default_factory=dict, description="Resource attributes beyond the service name (a pod's k8s.pod.name ...)"
    )
    sampled: bool = True


TaskResult.model_rebuild()
