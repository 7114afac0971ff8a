"""Kestra's WorkingDirectory: its tasks run one after the other in one working directory, in one pod.

The executor cannot render a step when it creates the pod: a step may read an earlier step's outputs
(`{{ outputs.first.vars.x }}`), which exist only once that step ran. So the pod gets each step unrendered,
with the render context as it was when the pod was made (`Step`), and the worker renders the step just
before it runs it, adding the outputs of the steps before it (`render_step`). Both halves are here, pure,
so the operator, the local runner and the worker share them.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from flowpods.core import secrets
from flowpods.core.model import Flow, TaskBase, WorkingDirectory
from flowpods.core.records import WorkItem
from flowpods.core.templating import NOW_KEY, render

_JSON: TypeAdapter[Any] = TypeAdapter(Any)
_DATES = (("execution", "startDate"), ("taskrun", "startDate"), ("workerTaskrun", "startDate"))
_SECRET_CALL = re.compile(r"""secret\(\s*['"]([A-Za-z0-9_.-]+)['"]""")


class Step(BaseModel):
    """One task of a WorkingDirectory as its pod receives it: unrendered, with what rendering it needs."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0)
    work: WorkItem = Field(description="`task` holds the task's fields unrendered")
    context: dict[str, Any] = Field(description="The render context when the pod was made, as JSON")
    traceparent: str = Field(description="The step's TASKRUN span: its WORKER span's parent")
    allowFailure: bool = False
    inputFiles: dict[str, str] = Field(default_factory=dict, description="The WorkingDirectory's, for step 0")


def steps_of(task: WorkingDirectory) -> list[TaskBase]:
    """The tasks the pod runs, in order: the enabled ones."""
    return [child for child in task.tasks if not child.disabled]


def workdirs(flow: Flow) -> set[str]:
    """The ids of the flow's WorkingDirectory tasks: each runs as one pod of steps."""
    return {task.id for task in flow.all_tasks() if isinstance(task, WorkingDirectory)}


def inside_workdirs(flow: Flow) -> set[str]:
    """The ids of the tasks that run inside a WorkingDirectory's pod (no pod of their own)."""
    return {child.id for task in flow.all_tasks() if isinstance(task, WorkingDirectory) for child in task.tasks}


def step_index(task: WorkingDirectory, task_id: str) -> int | None:
    return next((i for i, child in enumerate(steps_of(task)) if child.id == task_id), None)


def context_to_json(context: dict[str, Any]) -> dict[str, Any]:
    """The render context as JSON (dates as ISO text), for the pod; values computed on demand (errorLogs()'s
    entries) are computed here, since the pod cannot ask."""
    resolved = {key: value() if callable(value) else value for key, value in context.items()}
    dumped = _JSON.dump_python(resolved, mode="json")
    assert isinstance(dumped, dict)
    return dumped


def context_from_json(data: dict[str, Any]) -> dict[str, Any]:
    """The render context back, its dates as dates again (so they print and compute as in the executor)."""
    context = dict(data)
    for outer, inner in _DATES:
        section = context.get(outer)
        if isinstance(section, dict) and isinstance(section.get(inner), str):
            context[outer] = {**section, inner: datetime.fromisoformat(section[inner])}
    if isinstance(context.get(NOW_KEY), str):
        context[NOW_KEY] = datetime.fromisoformat(context[NOW_KEY])
    return context


def render_step(step: Step, earlier: dict[str, dict[str, Any]], working_dir: str | None = None) -> WorkItem:
    """The step's work item rendered, with the outputs of the steps before it (`earlier`: task id ->
    outputs) added to the context's, and Kestra's `workingDir` (the shared directory); raises RenderError."""
    context = context_from_json(step.context)
    context["outputs"] = {**context.get("outputs", {}), **earlier}
    if working_dir is not None:
        context["workingDir"] = working_dir
    rendered = render(step.work.task, context)
    return step.work.model_copy(update={"task": {"id": step.work.taskId, "type": step.work.taskType, **rendered}})


def secret_names(step: Step) -> list[str]:
    """The secrets an unrendered step may refer to (`secret('NAME')` with a literal name): the pod gets each
    as an optional variable, since the step is rendered only in the pod."""
    return secrets.names(step.work.task, _SECRET_CALL)
