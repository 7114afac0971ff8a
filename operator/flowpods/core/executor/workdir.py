"""The WorkingDirectory in the executor: one attempt, one pod, runs all its steps in one directory.

The pod's steps are planned when the attempt is created (`run_action`, called by the driver
`drivers.drive_workdir`); each step's task run is created from what the pod reports (transitions
`step_reported`, and `attempt_finished` for the pod's end), so the status holds exactly the steps that
ran, as Kestra's does.
"""

from __future__ import annotations

from flowpods.core import ids
from flowpods.core.executor.messages import RunTask
from flowpods.core.executor.rendering import WORKER_FIELDS_EXCLUDED, Renderer
from flowpods.core.model import WorkingDirectory
from flowpods.core.records import WorkItem
from flowpods.core.status import TaskRun
from flowpods.core.templating import RenderError, render
from flowpods.core.workdir import Step as PodStep
from flowpods.core.workdir import context_to_json, steps_of


def run_action(renderer: Renderer, task: WorkingDirectory, tr: TaskRun, number: int) -> RunTask | str:
    """The RunTask of the WorkingDirectory's pod: its steps unrendered with their context, or the rendering
    error (of its own `inputFiles`) that prevents it."""
    run = renderer.run
    try:
        files = render(task.inputFiles or {}, renderer.context(task, tr))
    except RenderError as exc:
        return f"inputFiles: {exc}"
    steps: list[PodStep] = []
    directory = renderer.context(task, tr)["taskrun"]  # Kestra's `workerTaskrun`: the WorkingDirectory's
    for index, child in enumerate(steps_of(task)):
        child_id = ids.taskrun_id(run, child.id, tr.id, tr.value)
        planned = TaskRun(id=child_id, taskId=child.id, parentId=tr.id, value=tr.value)
        raw = child.model_dump(mode="json", by_alias=True, exclude_none=True, exclude=WORKER_FIELDS_EXCLUDED)
        timeout = child.timeout.total_seconds() if child.timeout else None
        work = WorkItem(executionId=run.id, namespace=renderer.flow.namespace, flowId=renderer.flow.id,
                        taskRunId=child_id, taskId=child.id, attempt=1, taskType=child.kind, task=raw,
                        value=tr.value, timeoutSeconds=timeout)  # fmt: skip
        steps.append(
            PodStep(
                index=index,
                work=work,
                context=context_to_json({**renderer.context(child, planned, attempt=1), "workerTaskrun": directory}),
                traceparent=ids.traceparent_of(run, ids.attempt_span_id(run, child_id, 1)),
                allowFailure=child.allowFailure,
                inputFiles=files if index == 0 else {},
            )
        )
    timeouts = [s.work.timeoutSeconds for s in steps]
    return RunTask(
        work=WorkItem(
            executionId=run.id,
            namespace=renderer.flow.namespace,
            flowId=renderer.flow.id,
            taskRunId=tr.id,
            taskId=task.id,
            attempt=number,
            taskType=task.kind,
            task={},
            value=tr.value,
        ),
        traceparent=ids.traceparent_of(run, ids.taskrun_span_id(run, tr.id)),
        tracestate=run.tracestate,
        baggage=run.baggage,
        timeoutSeconds=sum(t for t in timeouts if t) if timeouts and all(timeouts) else None,
        steps=steps,
    )
