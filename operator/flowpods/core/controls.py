"""Execution controls (Kestra's resume and restart): how a request is named, and whether an execution takes it.

A request is an annotation on the Execution, `flowpods.io/resume` or `flowpods.io/restart`, written by
`kubectl annotate`, the API or the CLI. Its value names the request: the operator acts once per distinct
value and records what it did in `status.controls`, so re-annotating with the same value changes nothing.
A resume value may be a JSON object `{"inputs": {...}}` (the API and the CLI write one, with a `request`
id) carrying the Pause's `onResume` inputs. The API asks the same questions first, to answer 409 or 400
before it writes anything.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flowpods.core.inputs import resolve_declared
from flowpods.core.model import Flow, Flowable, FlowError, Pause, WaitFor
from flowpods.core.status import ExecutionStatus, State, TaskRun

ANNOTATION_RESUME = "flowpods.io/resume"
ANNOTATION_RESTART = "flowpods.io/restart"
ANNOTATIONS = {"resume": ANNOTATION_RESUME, "restart": ANNOTATION_RESTART}
RESTARTABLE = (State.FAILED, State.KILLED, State.WARNING)
MAX_CONTROLS = 20  # records kept in status.controls (the newest): the value of a request older than that is new again


def resume_problem(status: ExecutionStatus) -> str | None:
    """Why the execution cannot be resumed now (Kestra: only a PAUSED execution), or None."""
    if status.state != State.PAUSED:
        return f"the execution is {status.state.value}, not PAUSED: only a paused execution can be resumed"
    return None


def restart_problem(flow: Flow, status: ExecutionStatus) -> str | None:
    """Why the execution cannot be restarted now (it must have ended FAILED, KILLED or WARNING), or None."""
    if status.state not in RESTARTABLE:
        allowed = ", ".join(state.value for state in RESTARTABLE)
        return f"the execution is {status.state.value}: only an execution that ended {allowed} can be restarted"
    if status.folded.changes or status.folded.taskRuns:
        # its ended task runs and changes are kept in short form (core/compaction.py): what a restart reopens
        # and the spans it freezes are no longer there in full
        return "its status was compacted (a large execution): restarting it is not supported yet; replay it instead"
    if any(isinstance(task, WaitFor) for task in flow.all_tasks()):
        # its iterations re-run the same task runs: which of them a restart should reopen is not decided yet
        return "a flow with a WaitFor cannot be restarted yet; replay it instead"
    if not to_restart(flow, status):
        return "no task run failed: there is nothing to restart"
    return None


def manual_pauses(flow: Flow) -> list[str]:
    """The Pause tasks without a duration: they wait for a resume, which `flowpods run` has no way to get."""
    return [task.id for task in flow.all_tasks() if isinstance(task, Pause) and task.duration is None]


def paused(status: ExecutionStatus) -> list[TaskRun]:
    return [tr for tr in status.taskRuns if tr.state == State.PAUSED]


def resume_inputs(flow: Flow, status: ExecutionStatus, given: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The onResume inputs of each paused task run, validated like flow inputs; raises FlowError naming them.

    Every paused Pause gets the same inputs, checked against its own `onResume` (Kestra resumes them all)."""
    resolved: dict[str, dict[str, Any]] = {}
    for tr in paused(status):
        task = flow.task(tr.taskId)
        specs = task.onResume if isinstance(task, Pause) else []
        resolved[tr.id] = resolve_declared(specs, dict(given), f"the onResume of Pause '{tr.taskId}'")
    return resolved


def to_restart(flow: Flow, status: ExecutionStatus) -> list[TaskRun]:
    """The task runs a restart reopens: the failed ones (FAILED, KILLED, CANCELLED) and the flowables above
    them; successful ones, and those allowFailure turned into WARNING, are kept. Failures inside `errors`
    handlers are not reopened: the handlers ran because of the failure the restart retries."""
    by_id = {tr.id: tr for tr in status.taskRuns}
    handlers = {task.id for task in flow.errors}
    handlers |= {task.id for flowable in flow.all_tasks() if isinstance(flowable, Flowable) for task in flowable.errors}

    def in_handler(tr: TaskRun | None) -> bool:
        seen = 0
        while tr is not None and seen <= len(by_id):
            if tr.taskId in handlers:
                return True
            tr, seen = by_id.get(tr.parentId or ""), seen + 1
        return False

    chosen: dict[str, TaskRun] = {}
    for tr in status.taskRuns:
        if not tr.state.failed or in_handler(tr):
            continue
        current: TaskRun | None = tr
        while current is not None and current.id not in chosen:
            chosen[current.id] = current
            current = by_id.get(current.parentId or "")
    return [tr for tr in status.taskRuns if tr.id in chosen]


def resume_request(value: str) -> dict[str, Any]:
    """The onResume inputs a resume annotation carries: a JSON object's `inputs`, else none."""
    try:
        parsed = json.loads(value)
    except ValueError:
        return {}
    inputs = parsed.get("inputs") if isinstance(parsed, dict) else None
    return dict(inputs) if isinstance(inputs, dict) else {}


def resume_value(request: str, inputs: Mapping[str, Any]) -> str:
    """The annotation value the API and the CLI write: a request id (so each call is new) and the inputs."""
    return json.dumps({"request": request, "inputs": dict(inputs)}, separators=(",", ":"), sort_keys=True)


def pending(annotations: Mapping[str, Any], status: ExecutionStatus) -> list[tuple[str, str]]:
    """The (control, value) requests on the annotations that were not acted on yet."""
    found = []
    for control, annotation in ANNOTATIONS.items():
        value = annotations.get(annotation)
        if isinstance(value, str) and value and not status.acted_on(control, value):
            found.append((control, value))
    return found


def check_flow_inputs(flow: Flow, status: ExecutionStatus, given: Mapping[str, Any]) -> str | None:
    """The API's 400: the message naming every bad onResume input, or None."""
    try:
        resume_inputs(flow, status, given)
    except FlowError as exc:
        return str(exc)
    return None
