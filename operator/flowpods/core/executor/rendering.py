"""What the executor renders from the stored status: Kestra's template variables, and from them the
actions (a worker's RunTask, a StartSubflow), the branch an If or Switch takes and a ForEach's values.

Each function returns its result or the rendering error that prevents it; rendering an attempt again
(after an operator restart) gives the same result, because everything derives from the stored status.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

from flowpods.core import ids
from flowpods.core.executor.messages import RunTask, StartSubflow
from flowpods.core.inputs import coerce, nested
from flowpods.core.model import SLA, Each, Flow, If, Input, Pause, ScriptTask, Subflow, Switch, TaskBase
from flowpods.core.records import WorkItem
from flowpods.core.status import ExecutionStatus, RunInfo, State, TaskRun
from flowpods.core.templating import ERROR_LOGS_KEY, NOW_KEY, RenderError, is_truthy, render, render_string

CORRELATION_LABEL = "system.correlationId"
MAX_PARENTS = 100  # parents of a task run, nearest first (a cycle in a hand-edited status must end)
WORKER_FIELDS_EXCLUDED = {
    "id", "type", "retry", "timeout", "allowFailure", "allowWarning", "disabled", "description", "runIf",
    "logLevel", "logToFile", "workerGroup",
}  # fmt: skip
PAUSE_DURATION: TypeAdapter[timedelta] = TypeAdapter(timedelta)


def correlation_id(run: RunInfo) -> str:
    """Kestra's system.correlationId label: the id of the first execution of a chain of subflows."""
    return run.labels.get(CORRELATION_LABEL) or run.id


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
    for tr in status.with_outputs():
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
            "startDate": status.startDate or run.createdAt,
            "state": status.state.value,
            "originalId": run.originalId or run.id,
        },
        "flow": {"id": flow.id, "namespace": flow.namespace, "revision": run.flowRevision},
        "trigger": run.triggerData,
        "labels": nested({**flow.labels, **run.labels, CORRELATION_LABEL: correlation_id(run)}),
        "envs": {},
        "globals": {},
        NOW_KEY: now,
        ERROR_LOGS_KEY: lambda: error_log_entries(flow, run, status),  # read only by errorLogs(): lazily
    }
    if task is not None:
        context["task"] = {"id": task.id, "type": task.kind}
    if taskrun is not None:
        context["taskrun"] = {
            "id": taskrun.id,
            "value": taskrun.value,
            "attemptsCount": (attempt - 1) if attempt is not None else len(taskrun.attempts),
            "parentId": taskrun.parentId,
            "startDate": taskrun.startDate,
        }
        parents: list[dict[str, Any]] = []
        parent = status.taskrun(taskrun.parentId) if taskrun.parentId else None
        while parent is not None and len(parents) < MAX_PARENTS:
            parents.append({"taskrun": {"id": parent.id, "value": parent.value}, "outputs": parent.outputs})
            parent = status.taskrun(parent.parentId) if parent.parentId else None
        if parents:
            context["parent"], context["parents"] = parents[0], parents
    return context


def error_log_entries(flow: Flow, run: RunInfo, status: ExecutionStatus) -> list[dict[str, Any]]:
    """errorLogs()'s entries: one per failed task run. Computed when a template calls errorLogs(), not for
    every rendering: a ForEach of 10,000 values would walk all its task runs for each one it starts."""
    return [
        {
            "namespace": flow.namespace,
            "flowId": flow.id,
            "executionId": run.id,
            "taskId": tr.taskId,
            "taskRunId": tr.id,
            "attemptNumber": max(tr.attempt_count - 1, 0),
            "level": "ERROR",
            "message": tr.error,
        }
        for tr in status.taskRuns
        if tr.error and tr.state in (State.FAILED, State.KILLED, State.WARNING)
    ]


class Renderer:
    """Renders for one execution at one moment (the flow, run, status and time stay fixed)."""

    def __init__(self, flow: Flow, run: RunInfo, status: ExecutionStatus, now: datetime):
        self.flow, self.run, self.status, self.now = flow, run, status, now

    def context(
        self, task: TaskBase | None = None, tr: TaskRun | None = None, attempt: int | None = None
    ) -> dict[str, Any]:
        return render_context(self.flow, self.run, self.status, self.now, task, tr, attempt)

    def run_task(self, task: TaskBase, tr: TaskRun, number: int) -> RunTask | str:
        """The RunTask for an attempt, or the rendering error that prevents it."""
        raw = task.model_dump(mode="json", by_alias=True, exclude_none=True, exclude=WORKER_FIELDS_EXCLUDED)
        try:
            rendered = render(raw, self.context(task, tr, attempt=number))
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
        image = task.image if isinstance(task, ScriptTask) else None
        return RunTask(
            work=work,
            traceparent=ids.traceparent_of(self.run, ids.attempt_span_id(self.run, tr.id, number)),
            tracestate=self.run.tracestate,
            baggage=self.run.baggage,
            containerImage=image,
            timeoutSeconds=timeout,
        )

    def start_subflow(self, task: Subflow, tr: TaskRun) -> StartSubflow | str:
        """The StartSubflow of a Subflow task run, or the rendering error that prevents it."""
        context = self.context(task, tr)
        try:
            inputs = render(task.inputs, context)
            labels = {str(k): str(v) for k, v in render(task.labels, context).items()}
        except RenderError as exc:
            return str(exc)
        if task.inheritLabels:
            labels = {**self.flow.labels, **self.run.labels, **labels}
        labels[CORRELATION_LABEL] = correlation_id(self.run)  # the whole chain of subflows shares it
        return StartSubflow(
            taskRunId=tr.id,
            name=tr.child or ids.child_name(self.run, _restarted(tr), task.flowId),
            namespace=task.namespace,
            flowId=task.flowId,
            inputs=inputs,
            labels=labels,
            traceparent=ids.traceparent_of(self.run, ids.taskrun_span_id(self.run, tr.id, tr.generation())),
        )

    def branch(self, task: If | Switch, tr: TaskRun) -> tuple[str, dict[str, Any]]:
        """The branch an If or Switch takes (`then`/`else`, `case:<value>` or `defaults`) and its outputs."""
        context = self.context(task, tr)
        if isinstance(task, If):
            branch = "then" if is_truthy(render_string(task.condition, context)) else "else"
            return branch, {"branch": branch}
        value = render_string(task.value, context)
        return (f"case:{value}" if value in task.cases else "defaults"), {"value": value}

    def foreach_values(self, task: Each, tr: TaskRun) -> list[str]:
        """A ForEach's values as distinct strings (JSON for non-strings); raises ValueError or RenderError."""
        context = self.context(task, tr)
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

    def condition(self, condition: str, task: TaskBase, tr: TaskRun) -> bool:
        """A condition rendered for a task run, read with Kestra's truthiness (raises RenderError)."""
        return is_truthy(render_string(condition, self.context(task, tr)))

    def run_if(self, task: TaskBase, tr: TaskRun) -> bool:
        """Kestra's runIf: whether the task runs (raises RenderError)."""
        return task.runIf is None or is_truthy(render_string(task.runIf, self.context(task, tr)))

    def pause_duration(self, task: Pause, tr: TaskRun) -> timedelta:
        """How long a Pause lasts; raises RenderError, or ValueError naming a value that is not a duration."""
        text = render_string(task.duration or "", self.context(task, tr))
        try:
            return PAUSE_DURATION.validate_python(text.strip().upper())
        except ValidationError:
            raise ValueError(f"pauseDuration '{text}' is not an ISO-8601 duration") from None

    def sla_holds(self, sla: SLA) -> bool:
        """An EXECUTION_ASSERTION SLA's assertion, rendered when the execution ends (raises RenderError)."""
        return is_truthy(render_string(sla.assert_ or "", self.context()))

    def flow_outputs(self) -> dict[str, Any]:
        """The flow's declared outputs, rendered and converted to their type; raises RenderError or ValueError."""
        context = self.context()
        return {
            out.id: coerce(Input(id=out.id, type=out.type), render(out.value, context)) for out in self.flow.outputs
        }


def _restarted(tr: TaskRun) -> str:
    """The task run's id, marked with its restart count once reopened: a restarted Subflow starts a new child."""
    generation = tr.generation()
    return tr.id if generation == 0 else f"{tr.id}~{generation}"
