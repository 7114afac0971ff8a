"""Span derivation: the RUN, EXECUTOR and TASKRUN spans of an execution, computed from its stored status.

Pure functions of stored facts with deterministic ids, so any process (the operator after a restart, the
local runner, a test) derives the same spans, each with the change that completed it; `export` decides from
the status's watermark (`exported`, a change number) which of them to send.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flowpods.core import ids
from flowpods.core.model import Flow, TaskBase
from flowpods.core.records import WORKER_SERVICE, SpanEvent, SpanLink, SpanRecord
from flowpods.core.status import Attempt, ExecutionStatus, RunInfo, State, TaskRun

RESULTS = {
    State.SUCCESS: "success",
    State.WARNING: "success",
    State.FAILED: "failure",
    State.KILLED: "cancellation",
    State.CANCELLED: "cancellation",
}


def execution_attributes(run: RunInfo) -> dict[str, Any]:
    """The attributes every span of an execution carries (Kestra's, under flowpods.*, and CI/CD semconv)."""
    return {
        "flowpods.namespace": run.namespace,
        "flowpods.flow_id": run.flowId,
        "flowpods.execution_id": run.id,
        "cicd.pipeline.name": run.flowId,
        "cicd.pipeline.run.id": run.id,
    }


def run_links(run: RunInfo) -> list[SpanLink]:
    """The RUN span's links: to the RUN span of the execution whose end triggered this one (a new trace
    of its own, linked rather than parented: the trigger is a cause, not a part, of that execution)."""
    links = []
    for value in run.links:
        context = ids.parse_traceparent(value)
        if context is not None:
            attributes = {"flowpods.link": "triggered-by", "flowpods.trigger": run.trigger}
            if isinstance(source := run.triggerData.get("executionId"), str):
                attributes["flowpods.execution_id"] = source
            links.append(SpanLink(trace_id=context.trace_id, span_id=context.span_id, sampled=context.sampled,
                                  attributes=attributes))  # fmt: skip
    return links


def derive_spans(run: RunInfo, flow: Flow | None, status: ExecutionStatus) -> list[tuple[int, SpanRecord]]:
    """Every span that is complete in the stored status, each with the change number that completed it."""
    trace = ids.trace_id(run)
    sampled = ids.sampled(run)
    common = execution_attributes(run)
    run_id = ids.run_span_id(run)
    spans: list[tuple[int, SpanRecord]] = []

    def span(closed_in: int, **fields: Any) -> None:
        fields["attributes"] = {**common, **fields.get("attributes", {})}
        spans.append((closed_in, SpanRecord(trace_id=trace, sampled=sampled, **fields)))

    spans.extend((frozen.closedIn, frozen.span) for frozen in status.frozen)
    generation = status.generation()
    if status.state.terminal and status.closedIn is not None and status.endDate:
        inbound = ids.parse_traceparent(run.parentTraceparent)
        parent_id = inbound.span_id if inbound else None
        start = run.createdAt
        attributes: dict[str, Any] = {
            "flowpods.trigger": run.trigger,
            "flowpods.state": status.state.value,
            "cicd.pipeline.result": RESULTS.get(status.state, "error"),
        }
        if run.flowRevision is not None:
            attributes["flowpods.flow_revision"] = run.flowRevision
        if run.triggerId is not None:
            attributes["flowpods.trigger_id"] = run.triggerId
        if run.originalId:
            attributes["flowpods.replay_of"] = run.originalId
        if status.state.failed:
            attributes["error.type"] = status.state.value
        if generation:  # a restart's run: under the first RUN span, from the restart on
            attributes["flowpods.restart"] = generation
            parent_id, start = run_id, status.reopened_at() or start
        span(
            status.closedIn,
            name=f"RUN {run.flowId}",
            span_id=ids.run_span_id(run, generation),
            parent_span_id=parent_id,
            start=start,
            end=status.endDate,
            attributes=attributes,
            status="ERROR" if status.state.failed else "OK",
            status_message=status.error if status.state.failed else None,
            links=run_links(run),
        )

    for change in status.changes:
        attributes = {"flowpods.state": change.state.value, "flowpods.change": change.n, "flowpods.cause": change.cause}
        if change.created:
            attributes["flowpods.taskruns.created"] = list(change.created)
        if change.finished:
            attributes["flowpods.taskruns.finished"] = list(change.finished)
        span(
            change.n,
            name=f"EXECUTOR - {run.namespace}_{run.flowId}",
            span_id=ids.change_span_id(run, change.n),
            parent_span_id=ids.run_span_id(run, status.generation(change.end)),
            start=change.start,
            end=change.end,
            attributes=attributes,
        )

    by_id = {tr.id: tr for tr in status.taskRuns}
    tasks = {task.id: task for task in flow.all_tasks()} if flow else {}
    for tr in status.taskRuns:
        task = tasks.get(tr.taskId)
        if task is None:
            continue
        if not task.runs_in_worker:
            began = tr.reopened_at() or tr.startDate
            if tr.closedIn is not None and tr.endDate is not None and began is not None:
                parent_id = _parent_span(run, status, by_id, tr, began)
                span(tr.closedIn, **_executor_task_span(run, task, tr, parent_id, began))
            continue
        for attempt in tr.attempts:
            if attempt.closedIn is not None and attempt.endedAt is not None:
                parent_id = _parent_span(run, status, by_id, tr, attempt.createdAt)
                span(attempt.closedIn, **_attempt_span(run, task, tr, attempt, parent_id))
                spans.extend((attempt.closedIn, _worker_span(run, task, tr, attempt, r)) for r in attempt.spans)
    return spans


def _worker_span(run: RunInfo, task: TaskBase, tr: TaskRun, attempt: Attempt, record: SpanRecord) -> SpanRecord:
    """A span the worker handed back with its result, under the resource its pod had (as if sent from there)."""
    resource: dict[str, Any] = {
        "cicd.pipeline.name": run.flowId,
        "cicd.pipeline.run.id": run.id,
        "cicd.pipeline.task.name": task.id,
        "cicd.pipeline.task.run.id": tr.id,
    }
    if attempt.pod:
        resource["k8s.pod.name"] = attempt.pod
    if run.k8sNamespace:
        resource["k8s.namespace.name"] = run.k8sNamespace
    return record.model_copy(update={"service": record.service or WORKER_SERVICE, "resource": resource})


def _parent_span(run: RunInfo, status: ExecutionStatus, by_id: dict[str, TaskRun], tr: TaskRun, at: datetime) -> str:
    """Nested task runs hang under their flowable's EXECUTOR span; top-level ones under RUN: the span each
    had at `at` (a restart reopens them with new spans)."""
    parent = by_id.get(tr.parentId or "")
    if parent is not None:
        return ids.taskrun_span_id(run, parent.id, parent.generation(at))
    return ids.run_span_id(run, status.generation(at))


def _label(tr: TaskRun) -> str:
    return tr.taskId if tr.value is None else f"{tr.taskId} [{tr.value}]"


def _executor_task_span(run: RunInfo, task: TaskBase, tr: TaskRun, parent_id: str, start: datetime) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "cicd.pipeline.task.name": task.id,
        "cicd.pipeline.task.run.id": tr.id,
        "cicd.pipeline.task.run.result": RESULTS.get(tr.state, "error"),
        "flowpods.taskrun_id": tr.id,
        "flowpods.task_type": task.kind,
        "flowpods.state": tr.state.value,
    }
    if tr.value is not None:
        attributes["flowpods.value"] = tr.value
    if tr.branch is not None:
        attributes["flowpods.branch"] = tr.branch
    if tr.child:
        attributes["flowpods.child_execution_id"] = tr.child
    return {
        "name": f"EXECUTOR - {task.kind}",
        "span_id": ids.taskrun_span_id(run, tr.id, tr.generation()),
        "parent_span_id": parent_id,
        "start": start,
        "end": tr.endDate,
        "attributes": attributes,
        "status": "ERROR" if tr.state.failed else "OK",
        "status_message": tr.error if tr.state.failed else None,
    }


def _attempt_span(run: RunInfo, task: TaskBase, tr: TaskRun, attempt: Attempt, parent_id: str) -> dict[str, Any]:
    result = RESULTS.get(attempt.state, "error")
    if attempt.reason and attempt.reason.lower().startswith(("timeout", "deadline")):
        result = "timeout"
    attributes: dict[str, Any] = {
        "cicd.pipeline.task.name": task.id,
        "cicd.pipeline.task.run.id": tr.id,
        "cicd.pipeline.task.run.result": result,
        "flowpods.taskrun_id": tr.id,
        "flowpods.task_type": task.kind,
        "flowpods.attempt": attempt.number,
        "flowpods.state": attempt.state.value,
    }
    if tr.value is not None:
        attributes["flowpods.value"] = tr.value
    if attempt.pod:
        attributes["k8s.pod.name"] = attempt.pod
    if run.k8sNamespace:
        attributes["k8s.namespace.name"] = run.k8sNamespace
    if attempt.node:
        attributes["k8s.node.name"] = attempt.node
    if attempt.exitCode is not None:
        attributes["process.exit.code"] = attempt.exitCode
    events = []
    if attempt.scheduledAt:
        events.append(SpanEvent(name="pod scheduled", time=attempt.scheduledAt))
    if attempt.startedAt:
        events.append(SpanEvent(name="container started", time=attempt.startedAt))
    if attempt.endedAt and attempt.state != State.KILLED:
        extra = {"process.exit.code": attempt.exitCode} if attempt.exitCode is not None else {}
        events.append(SpanEvent(name="container terminated", time=attempt.endedAt, attributes=extra))
    failed = attempt.state.failed
    return {
        "name": f"TASKRUN {_label(tr)}",
        "span_id": ids.attempt_span_id(run, tr.id, attempt.number),
        "parent_span_id": parent_id,
        "start": attempt.createdAt,
        "end": max(attempt.endedAt, attempt.createdAt) if attempt.endedAt else attempt.createdAt,
        "attributes": attributes,
        "events": events,
        "status": "ERROR" if failed else "OK",
        "status_message": attempt.reason if failed else None,
    }
