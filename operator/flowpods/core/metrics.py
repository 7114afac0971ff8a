"""Metrics as facts: what a committed status change adds to the operator's metrics, and what the view shows.

Pure, like span derivation. `committed(before, after)` returns the measurements of everything the changes
numbered above `before`'s last change and up to `after`'s closed (a run, an attempt, a task run, a first
task created), so a measurement belongs to exactly one committed change: the operator records it once,
after that change's commit, and an operator that restarts reads the committed status as `before` and never
records it again. Gauges are recomputed from the view of the cluster on every collection, so a restarted
operator rebuilds them from what its watches list.

Names, units and attributes follow OpenTelemetry's CI/CD conventions (`cicd.*`); flowpods' own metrics are
`flowpods.*`. Run and task-run ids are attributes only when asked for (`run_ids`), as the conventions say.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from flowpods.core import ids
from flowpods.core.model import Flow
from flowpods.core.spans import RESULTS
from flowpods.core.status import Attempt, ExecutionStatus, RunInfo, State, TaskRun

Kind = Literal["histogram", "counter", "updowncounter", "gauge"]

RUN_DURATION = "cicd.pipeline.run.duration"
RUN_ACTIVE = "cicd.pipeline.run.active"
RUN_ERRORS = "cicd.pipeline.run.errors"
SYSTEM_ERRORS = "cicd.system.errors"
WORKER_COUNT = "cicd.worker.count"
TASKRUN_DURATION = "flowpods.taskrun.duration"
FIRST_TASK_DELAY = "flowpods.execution.first_task.delay"
POD_START_DELAY = "flowpods.pod.start.delay"
WAITING = "flowpods.executions.waiting"
RECONCILE_DURATION = "flowpods.reconcile.duration"
IN_FLIGHT = "flowpods.reconcile.in_flight"
K8S_REQUEST_DURATION = "flowpods.k8s.request.duration"
SPANS_EXPORTED = "flowpods.spans.exported"


@dataclass(frozen=True)
class Instrument:
    """One metric: its OpenTelemetry name, instrument kind, UCUM unit, attributes and meaning."""

    name: str
    kind: Kind
    unit: str
    attributes: tuple[str, ...]
    description: str
    observed: bool = False  # read from the view at each collection, not recorded on change


INSTRUMENTS: tuple[Instrument, ...] = (
    Instrument(
        RUN_DURATION,
        "histogram",
        "s",
        ("cicd.pipeline.name", "flowpods.namespace", "cicd.pipeline.run.state", "cicd.pipeline.result", "error.type"),
        "Duration of an execution by flow, CI/CD run state (pending: created to running, executing: "
        "running to its end) and result; recorded when it ends",
    ),
    Instrument(
        RUN_ACTIVE,
        "updowncounter",
        "{run}",
        ("cicd.pipeline.name", "cicd.pipeline.run.state"),
        "Executions not ended, by flow and CI/CD run state (pending, executing, finalizing)",
        observed=True,
    ),
    Instrument(
        RUN_ERRORS,
        "counter",
        "{error}",
        ("cicd.pipeline.name", "flowpods.namespace", "error.type"),
        "Errors in executions: each failed task-run attempt (retried or not), and each execution that "
        "failed before any task ran",
    ),
    Instrument(
        SYSTEM_ERRORS,
        "counter",
        "{error}",
        ("cicd.system.component", "error.type"),
        "Errors of flowpods itself: a reconcile that raised, a span export that failed",
    ),
    Instrument(
        WORKER_COUNT,
        "updowncounter",
        "{count}",
        ("cicd.worker.state",),
        "Worker pods by state: busy (Pending or Running)",
        observed=True,
    ),
    Instrument(
        TASKRUN_DURATION,
        "histogram",
        "s",
        (
            "cicd.pipeline.name",
            "flowpods.namespace",
            "cicd.pipeline.task.name",
            "flowpods.task_type",
            "cicd.pipeline.task.run.result",
        ),
        "Duration of a task-run attempt (a worker pod's life, created to terminated) or of an executor "
        "task run (Subflow, Parallel ...), by flow and task",
    ),
    Instrument(
        FIRST_TASK_DELAY,
        "histogram",
        "s",
        ("cicd.pipeline.name", "flowpods.namespace"),
        "From an execution's creation to the change that created its first task run (queueing and "
        "the operator's pickup)",
    ),
    Instrument(
        POD_START_DELAY,
        "histogram",
        "s",
        ("cicd.pipeline.name", "flowpods.namespace", "cicd.pipeline.task.name"),
        "From a worker pod's creation to its container's start (scheduling, image pull); recorded when "
        "the attempt ends",
    ),
    Instrument(
        WAITING,
        "gauge",
        "{execution}",
        ("cicd.pipeline.name", "flowpods.state"),
        "Executions waiting to start, by flow and state (CREATED, QUEUED)",
        observed=True,
    ),
    Instrument(
        RECONCILE_DURATION,
        "histogram",
        "s",
        ("flowpods.result",),
        "Duration of one reconcile of one execution, by result (ok, conflict, error)",
    ),
    Instrument(IN_FLIGHT, "updowncounter", "{reconcile}", (), "Reconciles running now (work in flight)", observed=True),
    Instrument(
        K8S_REQUEST_DURATION,
        "histogram",
        "s",
        ("http.request.method", "http.response.status_code"),
        "Duration of the operator's Kubernetes API requests by verb and status code (kopf's watches excluded)",
    ),
    Instrument(
        SPANS_EXPORTED,
        "counter",
        "{span}",
        ("flowpods.result",),
        "Derived spans handed to the OTLP exporter, by result (success, failure)",
    ),
)

BY_NAME = {instrument.name: instrument for instrument in INSTRUMENTS}


@dataclass(frozen=True)
class Measurement:
    """One value for one instrument; `exemplar` is the (trace id, span id) of the span it measures."""

    name: str
    value: float
    attributes: dict[str, str | int] = field(default_factory=dict)
    exemplar: tuple[str, str] | None = None


def committed(
    run: RunInfo,
    flow: Flow | None,
    before: ExecutionStatus | None,
    after: ExecutionStatus,
    *,
    traced: bool = True,
    run_ids: bool = False,
) -> list[Measurement]:
    """What the changes committed between `before` and `after` add: every run, attempt and task run they
    closed, and the first task run if they created it. Exemplars name the measured span when `traced`."""
    low = before.last_change if before is not None else 0
    high = after.last_change

    def new(closed_in: int | None) -> bool:
        return closed_in is not None and low < closed_in <= high

    flow_attrs: dict[str, str | int] = {"cicd.pipeline.name": run.flowId, "flowpods.namespace": run.namespace}
    run_attrs = {**flow_attrs, **({"cicd.pipeline.run.id": run.id} if run_ids else {})}
    trace = ids.trace_id(run) if traced and ids.sampled(run) else None

    def exemplar(span_id: str) -> tuple[str, str] | None:
        return (trace, span_id) if trace is not None else None

    found: list[Measurement] = []
    first = next((change for change in after.changes if change.created), None)
    if first is not None and not after.folded.created and low < first.n <= high:
        found.append(
            Measurement(
                FIRST_TASK_DELAY, _seconds(run.createdAt, first.end), dict(run_attrs), exemplar(ids.run_span_id(run))
            )
        )
    tasks = {task.id: task for task in flow.all_tasks()} if flow else {}
    for tr in after.taskRuns:
        task = tasks.get(tr.taskId)
        task_attrs: dict[str, str | int] = {
            **flow_attrs,
            "cicd.pipeline.task.name": tr.taskId,
            "flowpods.task_type": task.kind if task else "unknown",
            **({"cicd.pipeline.task.run.id": tr.id} if run_ids else {}),
        }
        if task is not None and not task.runs_in_worker:
            if new(tr.closedIn) and tr.startDate is not None and tr.endDate is not None:
                found.append(
                    Measurement(
                        TASKRUN_DURATION,
                        _seconds(tr.startDate, tr.endDate),
                        {**task_attrs, "cicd.pipeline.task.run.result": RESULTS.get(tr.state, "error")},
                        exemplar(ids.taskrun_span_id(run, tr.id)),
                    )
                )
            continue
        for attempt in tr.attempts:
            if new(attempt.closedIn) and attempt.endedAt is not None:
                found.extend(
                    _attempt(
                        run_attrs, task_attrs, tr, attempt, exemplar(ids.attempt_span_id(run, tr.id, attempt.number))
                    )
                )
    if new(after.closedIn) and after.state.terminal and after.endDate is not None:
        found.extend(_run_end(run, after, run_attrs, exemplar(ids.run_span_id(run, after.generation()))))
    return found


def _attempt(
    run_attrs: dict[str, str | int],
    task_attrs: dict[str, str | int],
    tr: TaskRun,
    attempt: Attempt,
    exemplar: tuple[str, str] | None,
) -> list[Measurement]:
    assert attempt.endedAt is not None
    result = attempt_result(attempt)
    found = [
        Measurement(
            TASKRUN_DURATION,
            _seconds(attempt.createdAt, attempt.endedAt),
            {**task_attrs, "cicd.pipeline.task.run.result": result},
            exemplar,
        ),
    ]
    if attempt.startedAt is not None:
        found.append(
            Measurement(
                POD_START_DELAY,
                _seconds(attempt.createdAt, attempt.startedAt),
                {k: v for k, v in task_attrs.items() if k != "flowpods.task_type"},
                exemplar,
            )
        )
    if attempt.state == State.FAILED:
        found.append(Measurement(RUN_ERRORS, 1, {**run_attrs, "error.type": error_type(attempt.reason)}))
    return found


def _run_end(
    run: RunInfo, status: ExecutionStatus, run_attrs: dict[str, str | int], exemplar: tuple[str, str] | None
) -> list[Measurement]:
    assert status.endDate is not None
    result: dict[str, str | int] = {"cicd.pipeline.result": RESULTS.get(status.state, "error")}
    if status.state.failed:
        result["error.type"] = status.state.value
    running = next((t.at for t in status.history if t.state == State.RUNNING), None)
    pending_end = running or status.endDate
    found = [
        Measurement(
            RUN_DURATION,
            _seconds(run.createdAt, pending_end),
            {**run_attrs, "cicd.pipeline.run.state": "pending", **result},
            exemplar,
        ),
    ]
    if running is not None:
        found.append(
            Measurement(
                RUN_DURATION,
                _seconds(running, status.endDate),
                {**run_attrs, "cicd.pipeline.run.state": "executing", **result},
                exemplar,
            )
        )
    if status.state == State.FAILED and not status.taskRuns:
        found.append(Measurement(RUN_ERRORS, 1, {**run_attrs, "error.type": "start_failed"}))
    return found


def attempt_result(attempt: Attempt) -> str:
    """The conventions' task-run result of an attempt (a timeout is its own result)."""
    if attempt.reason and attempt.reason.lower().startswith(("timeout", "deadline")):
        return "timeout"
    return RESULTS.get(attempt.state, "error")


def error_type(reason: str | None) -> str:
    """A low-cardinality class of an attempt's failure reason."""
    text = (reason or "").lower()
    if text.startswith(("timeout", "deadline")):
        return "timeout"
    if text.startswith("oomkilled"):
        return "oom_killed"
    if text.startswith("image pull"):
        return "image_pull"
    if text.startswith("pod deleted"):
        return "pod_deleted"
    return "task_failed"


# --- what the view shows (gauges) -----------------------------------------------------------------------

RUN_STATES = {
    State.CREATED: "pending",
    State.QUEUED: "pending",
    State.RUNNING: "executing",
    State.RETRYING: "executing",
    State.KILLING: "finalizing",
}
WAITING_STATES = (State.CREATED, State.QUEUED)


def runs(executions: Iterable[tuple[str, State | None]]) -> list[Measurement]:
    """cicd.pipeline.run.active and flowpods.executions.waiting from (flow, state) of every execution in view
    (no state yet is CREATED). Every flow in view gets every state, so a count that drops to 0 reads 0."""
    active: dict[tuple[str, str], int] = {}
    waiting: dict[tuple[str, State], int] = {}
    for flow, state in executions:
        for run_state in ("pending", "executing", "finalizing"):
            active.setdefault((flow, run_state), 0)
        for wait_state in WAITING_STATES:
            waiting.setdefault((flow, wait_state), 0)
        current = state or State.CREATED
        if current in RUN_STATES:
            active[flow, RUN_STATES[current]] += 1
        if current in WAITING_STATES:
            waiting[flow, current] += 1
    return [
        *(
            Measurement(RUN_ACTIVE, n, {"cicd.pipeline.name": f, "cicd.pipeline.run.state": s})
            for (f, s), n in sorted(active.items())
        ),
        *(
            Measurement(WAITING, n, {"cicd.pipeline.name": f, "flowpods.state": s.value})
            for (f, s), n in sorted(waiting.items())
        ),
    ]


def workers(pod_phases: Iterable[str | None]) -> list[Measurement]:
    """cicd.worker.count: worker pods that hold a task (Pending or Running) are busy."""
    busy = sum(1 for phase in pod_phases if phase in (None, "Pending", "Running"))
    return [Measurement(WORKER_COUNT, busy, {"cicd.worker.state": "busy"})]


def initial() -> list[Measurement]:
    """Counters of known attributes start at 0, so a query of them has a series before the first error."""
    return [
        Measurement(SYSTEM_ERRORS, 0, {"cicd.system.component": "span_exporter", "error.type": "export_failed"}),
    ]


def reconciling(count: int) -> list[Measurement]:
    """flowpods.reconcile.in_flight, observed (a count the operator keeps, not two SDK calls per reconcile)."""
    return [Measurement(IN_FLIGHT, count)]


# --- the operator's own work -----------------------------------------------------------------------------


def reconciled(
    seconds: float, result: Literal["ok", "conflict", "error"], error: str | None = None
) -> list[Measurement]:
    """One reconcile's duration, and a system error when it raised."""
    found = [Measurement(RECONCILE_DURATION, seconds, {"flowpods.result": result})]
    if result == "error":
        found.append(
            Measurement(SYSTEM_ERRORS, 1, {"cicd.system.component": "reconciler", "error.type": error or "Exception"})
        )
    return found


def exported(spans: int, ok: bool) -> list[Measurement]:
    """One span export's result; a failed export is also a system error."""
    found = [Measurement(SPANS_EXPORTED, spans, {"flowpods.result": "success" if ok else "failure"})]
    if not ok:
        found.append(
            Measurement(SYSTEM_ERRORS, 1, {"cicd.system.component": "span_exporter", "error.type": "export_failed"})
        )
    return found


def k8s_request(method: str, status: int, seconds: float) -> Measurement:
    """One Kubernetes API request (status 0: no response)."""
    return Measurement(
        K8S_REQUEST_DURATION, seconds, {"http.request.method": method.upper(), "http.response.status_code": status}
    )


def _seconds(start: datetime, end: datetime) -> float:
    return max((end - start).total_seconds(), 0.0)
