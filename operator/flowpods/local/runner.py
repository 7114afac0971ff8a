"""The embedded runtime: runs a flow on this machine with the same executor the operator uses.

Each task-run attempt is the same worker code the pods run, in a process of its own with TRACEPARENT
set, so a local run produces the same trace as a run in a cluster. The process is forked from a server
that imported the worker once (local/warm.py), not a new interpreter. Shell and Python tasks run on this
machine, without a container.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowpods.core import executor, flowtriggers, ids
from flowpods.core import export as span_export
from flowpods.core.clock import utcnow
from flowpods.core.model import Flow
from flowpods.core.records import (
    RESULTS_ENV,
    SPAN_FILE_ENV,
    TASKRUN_ENV,
    TASKRUN_FILE_ENV,
    TERMINATION_LOG_ENV,
    WORKDIR_ENV,
    SpanRecord,
)
from flowpods.core.results import attempt_finished, parse_termination_message
from flowpods.core.spans import derive_spans
from flowpods.core.start import CannotStart, Refusal, start_check
from flowpods.core.status import Change, ExecutionStatus, RunInfo, State
from flowpods.core.workerenv import TRACE_VARIABLES, worker_environment
from flowpods.local import warm
from flowpods.local.loader import FlowCatalog
from flowpods.telemetry.span_file import read_span_file

if TYPE_CHECKING:  # the SDK is imported only where spans are exported (`flowpods run` with an endpoint)
    from flowpods.telemetry.otel import SpanRecordExporter

TIMEOUT_GRACE_SECONDS = 10.0
EXPORT_TIMEOUT = 1.0  # seconds one export may take: a missing collector slows a local run by at most this
MAX_TRIGGERED = 20  # executions a local run starts by Flow triggers
EXPORT_BACKOFF = 10.0  # seconds without export attempts after a failed one (spans wait above the watermark)
IDLE_WAIT = 0.5  # seconds at most between two looks when no attempt ends (a kill, a wake-up or a deadline)


@dataclass
class LocalExecution:
    flow: Flow
    run: RunInfo
    status: ExecutionStatus
    depth: int = 0
    parent: tuple[str, str] | None = None  # (execution id, Subflow task-run id)
    reported_to_parent: bool = False
    wake_at: datetime | None = None


@dataclass
class _Process:
    execution: str
    action: executor.RunTask
    popen: warm.WorkerProcess
    started: datetime
    deadline: float | None
    termination_file: Path
    log_file: Path
    step: int | None = None  # a WorkingDirectory's: the index of the step this process runs
    plan: executor.RunTask | None = None  # and the WorkingDirectory's attempt


@dataclass
class LocalResult:
    root: LocalExecution
    executions: dict[str, LocalExecution]
    spans: list[SpanRecord]
    logs: dict[str, Path] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)


ChangeListener = Callable[[LocalExecution, Change], None]
LogListener = Callable[[LocalExecution, executor.RunTask, str], None]


class LocalRunner:
    """Drives executions to their end, one worker process per task-run attempt."""

    def __init__(
        self,
        catalog: FlowCatalog,
        exporter: SpanRecordExporter | None = None,
        on_change: ChangeListener | None = None,
        on_log: LogListener | None = None,
        work_dir: str | Path | None = None,
        environ: dict[str, str] | None = None,
    ):
        self.catalog = catalog
        self.exporter = exporter
        self.on_change = on_change or (lambda execution, change: None)
        self.on_log = on_log or (lambda execution, action, text: None)
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="flowpods-run-"))
        self.environ = dict(os.environ if environ is None else environ)
        self.span_file = self.work_dir / "worker-spans.jsonl"
        self.executions: dict[str, LocalExecution] = {}
        self.processes: dict[tuple[str, str, int], _Process] = {}
        self.logs: dict[str, Path] = {}
        self._export_again_at = 0.0
        self.notices: list[str] = []
        self.triggered = 0  # executions started by Flow triggers (bounded: flows may trigger each other in a loop)
        warm.warm_up()  # the fork server imports the worker while the flow starts

    # -- the loop -------------------------------------------------------------------------------------

    def run(
        self, flow: Flow, inputs: dict[str, Any] | None = None, labels: dict[str, str] | None = None
    ) -> LocalResult:
        root_id = f"{ids.dns_label(flow.id, 40)}-{uuid.uuid4().hex[:8]}"
        parent = self.environ.get("TRACEPARENT")
        run = RunInfo(
            id=root_id,
            uid=str(uuid.uuid4()),
            namespace=flow.namespace,
            flowId=flow.id,
            trigger="local",
            labels=labels or {},
            parentTraceparent=parent if ids.parse_traceparent(parent) else None,
            tracestate=self.environ.get("TRACESTATE") if ids.parse_traceparent(parent) else None,
            baggage=self.environ.get("BAGGAGE") or None,
            createdAt=utcnow(),
        )
        root = self._create(flow, run, inputs or {}, depth=0, parent=None)
        try:
            waiting = [root.run.id]
            while waiting:
                interrupted = self._drive(waiting)
                waiting = [] if interrupted else self._fire_flow_triggers()
            while self.processes:  # let killed workers exit and leave their spans
                self._reap(block=True)
        finally:
            for process in self.processes.values():
                process.popen.kill()
        self._export_again_at = 0.0
        for execution in self.executions.values():  # a last try for the spans whose export failed or waited
            self._export(execution)
        spans = [record for ex in self.executions.values() for _, record in derive_spans(ex.run, ex.flow, ex.status)]
        handed_back = {record.span_id for record in spans}  # the span file has every worker span, these too
        spans += [r for r in read_span_file(self.span_file) if r.span_id not in handed_back]
        return LocalResult(root=root, executions=self.executions, spans=spans, logs=self.logs, notices=self.notices)

    def _drive(self, waiting: list[str]) -> bool:
        """Step until the executions in `waiting` ended; True when Ctrl-C killed them."""
        interrupted = False
        while any(not self.executions[name].status.state.terminal for name in waiting):
            try:
                self._step()
            except KeyboardInterrupt:
                interrupted = True
                for name in waiting:
                    if not self.executions[name].status.state.terminal:
                        self._advance(name, [executor.Kill(at=utcnow())])
        return interrupted

    def _fire_flow_triggers(self) -> list[str]:
        """Start the flows of the catalog whose Flow trigger an ended execution fires, as the operator does
        in a namespace (core.flowtriggers); each ended execution fires once. The executions started."""
        started: list[str] = []
        listeners = [(f"{f.namespace}.{f.id}", f) for f in self.catalog.listeners()]
        for execution in list(self.executions.values()):
            if not execution.status.state.terminal or execution.status.triggered is not None:
                continue
            ended = flowtriggers.Ended(execution.flow, execution.run, execution.status)
            fired = flowtriggers.firings(ended, listeners) if listeners else []
            names = []
            for firing in fired:
                if firing.error is not None:
                    self.notices.append(firing.error)
                elif self.triggered >= MAX_TRIGGERED:
                    self.notices.append(f"{firing.resource} not started by trigger '{firing.trigger_id}': a local "
                                        f"run starts at most {MAX_TRIGGERED} executions by Flow triggers")  # fmt: skip
                elif firing.name not in self.executions:
                    self.triggered += 1
                    self._create(firing.flow, self._triggered_run(execution, firing), firing.inputs, 0, None)
                    started.append(firing.name)
                names.append(firing.name)
            execution.status.triggered = names
        return started

    def _triggered_run(self, ended: LocalExecution, firing: flowtriggers.Firing) -> RunInfo:
        return RunInfo(
            id=firing.name,
            uid=ids.trace_id_for(ended.run.uid, firing.name),
            namespace=firing.flow.namespace,
            flowId=firing.flow.id,
            trigger=flowtriggers.TRIGGER_KIND,
            triggerId=firing.trigger_id,
            triggerData=firing.data,
            links=[firing.link] if firing.link else [],
            baggage=ended.run.baggage,
            createdAt=utcnow(),
        )

    def _step(self) -> None:
        events: dict[str, list[Any]] = defaultdict(list)
        for execution_id, event in self._reap(block=False):
            events[execution_id].append(event)
        now = utcnow()
        for execution in self.executions.values():
            if execution.wake_at is not None and execution.wake_at <= now and not execution.status.state.terminal:
                events[execution.run.id].append(executor.Tick(at=now))
        if not events:
            self._idle(now)
            return
        for execution_id, batch in events.items():
            self._advance(execution_id, batch)

    def _idle(self, now: datetime) -> None:
        """Wait until an attempt ends, the next wake-up or deadline is due, or IDLE_WAIT has passed."""
        timeout = IDLE_WAIT
        for execution in self.executions.values():
            if execution.wake_at is not None and not execution.status.state.terminal:
                timeout = min(timeout, (execution.wake_at - now).total_seconds())
        for process in self.processes.values():
            if process.deadline is not None:
                timeout = min(timeout, process.deadline - time.monotonic())
        if self.processes:
            warm.wait_any([p.popen for p in self.processes.values()], max(timeout, 0.0))
        else:
            time.sleep(max(timeout, 0.0))

    def _create(
        self, flow: Flow, run: RunInfo, inputs: dict[str, Any], depth: int, parent: tuple[str, str] | None
    ) -> LocalExecution:
        execution = LocalExecution(flow=flow, run=run, status=ExecutionStatus(), depth=depth, parent=parent)
        self.executions[run.id] = execution
        self._advance(run.id, [executor.Start(at=run.createdAt, inputs=inputs)])
        return execution

    def _advance(self, execution_id: str, events: list[Any]) -> None:
        execution = self.executions[execution_id]
        decision = executor.advance(execution.flow, execution.run, execution.status, events, utcnow())
        self._commit(execution, decision)
        for action in decision.actions:
            self._act(execution, action)
        self._report_to_parent(execution)

    def _commit(self, execution: LocalExecution, decision: executor.Decision) -> None:
        execution.status = decision.status
        execution.wake_at = decision.wakeAt
        if not decision.changed:
            return
        self.on_change(execution, decision.status.changes[-1])
        self._export(execution)

    def _export(self, execution: LocalExecution) -> None:
        """The operator's protocol (core/export.py): the watermark moves only once the exporter confirmed."""
        plan = span_export.plan(execution.run, execution.flow, execution.status)
        if plan is None or self.exporter is None or time.monotonic() < self._export_again_at:
            return
        confirmed = self.exporter.export(plan.spans)
        execution.status.exported = span_export.advance(plan, confirmed)
        if not confirmed:
            self._export_again_at = time.monotonic() + EXPORT_BACKOFF

    def _report_to_parent(self, execution: LocalExecution) -> None:
        if execution.parent is None or execution.reported_to_parent or not execution.status.state.terminal:
            return
        execution.reported_to_parent = True
        parent_id, taskrun_id = execution.parent
        event = executor.ChildFinished(
            at=utcnow(), taskRunId=taskrun_id, state=execution.status.state, outputs=execution.status.outputs,
            error=execution.status.error,
        )  # fmt: skip
        self._advance(parent_id, [event])

    # -- actions --------------------------------------------------------------------------------------

    def _act(self, execution: LocalExecution, action: Any) -> None:
        if isinstance(action, executor.RunTask):
            self._spawn(execution, action)
        elif isinstance(action, executor.StopTask):
            process = self.processes.get((execution.run.id, action.taskRunId, action.attempt))
            if process is not None and process.popen.poll() is None:
                process.popen.terminate()
        elif isinstance(action, executor.StartSubflow):
            self._start_subflow(execution, action)
        elif isinstance(action, executor.KillSubflow):
            child = self.executions.get(action.name)
            if child is not None and not child.status.state.terminal:
                self._advance(action.name, [executor.Kill(at=utcnow())])

    def _start_subflow(self, execution: LocalExecution, action: executor.StartSubflow) -> None:
        if action.name in self.executions:
            return
        flow = self.catalog.get(action.namespace, action.flowId)
        cannot: CannotStart | None
        if flow is None:
            cannot = CannotStart(Refusal.NOT_FOUND, self.catalog.not_found(action.namespace, action.flowId))
        else:
            cannot = start_check(f"{action.namespace}.{action.flowId}", flow, depth=execution.depth + 1,
                                 root=next(iter(self.executions)), started=len(self.executions) - 1)  # fmt: skip
        if cannot is not None or flow is None:
            problem = cannot.message if cannot else "cannot start"
            failed = executor.ChildFinished(
                at=utcnow(), taskRunId=action.taskRunId, state=State.FAILED, outputs={"error": problem}, error=problem
            )
            self._advance(execution.run.id, [failed])
            return
        run = RunInfo(
            id=action.name,
            uid=ids.trace_id_for(execution.run.uid, action.name),
            namespace=flow.namespace,
            flowId=flow.id,
            trigger="subflow",
            triggerData={"executionId": execution.run.id, "namespace": execution.run.namespace,
                         "flowId": execution.run.flowId},
            labels=action.labels,
            parentTraceparent=action.traceparent,
            tracestate=execution.run.tracestate,
            baggage=execution.run.baggage,
            createdAt=utcnow(),
        )  # fmt: skip
        self._create(flow, run, action.inputs, execution.depth + 1, (execution.run.id, action.taskRunId))

    def _spawn(self, execution: LocalExecution, action: executor.RunTask, step: int | None = None) -> None:
        """A worker process for the attempt; for a WorkingDirectory, for one of its steps, in its folder."""
        key = (execution.run.id, action.work.taskRunId, action.work.attempt)
        if step is None and key in self.processes:
            return
        if action.steps is not None and step is None:
            step = 0
        plan = action if action.steps is not None else None
        stem = f"{execution.run.id}-{action.work.taskRunId}-{action.work.attempt}"
        work, document, argv, cwd, extra = action.work, action.work.model_dump_json(), ["worker"], self.work_dir, {}
        timeout = action.timeoutSeconds
        if action.steps is not None and step is not None:
            planned = action.steps[step]
            work, document, argv = planned.work, planned.model_dump_json(), ["worker", "--step"]
            cwd = self.work_dir / f"{stem}-workdir"  # the folder the steps share
            cwd.mkdir(exist_ok=True)
            extra = {WORKDIR_ENV: str(cwd), RESULTS_ENV: str(self.work_dir / f"{stem}-steps")}
            timeout = work.timeoutSeconds
            update = {"work": work, "traceparent": planned.traceparent, "timeoutSeconds": timeout}
            action = action.model_copy(update=update)
            stem = f"{stem}-{step}"
        item_file = self.work_dir / f"{stem}.json"
        item_file.write_text(document)
        termination_file = self.work_dir / f"{stem}.result"
        log_file = self.work_dir / f"{stem}.log"
        inherited = {k: v for k, v in self.environ.items() if k not in (*TRACE_VARIABLES, TASKRUN_ENV)}
        env = {
            **inherited,
            TASKRUN_FILE_ENV: str(item_file),
            TERMINATION_LOG_ENV: str(termination_file),
            SPAN_FILE_ENV: str(self.span_file),
            **worker_environment(action, execution.run),
            **extra,
        }
        popen = warm.WorkerProcess(argv, env, cwd, log_file)
        deadline = time.monotonic() + timeout + TIMEOUT_GRACE_SECONDS if timeout else None
        self.processes[key] = _Process(execution.run.id, action, popen, utcnow(), deadline, termination_file, log_file,
                                       step, plan)  # fmt: skip
        self.logs[f"{execution.run.id}/{work.taskId}#{work.attempt}"] = log_file

    def _step_ended(
        self, key: tuple[str, str, int], process: _Process, code: int, finished: executor.AttemptFinished
    ) -> list[tuple[str, Any]]:
        """A WorkingDirectory's step ended: report it, then run the next step, or end the attempt (as its pod
        would: after the last step, or after a step that exited non-zero)."""
        wd_tr, number = key[1], key[2]
        assert process.step is not None and process.plan is not None and process.plan.steps is not None
        events: list[tuple[str, Any]] = [(process.execution, executor.StepReported(
            at=finished.at, taskRunId=wd_tr, attempt=number, step=process.step, startedAt=process.started,
            finished=finished,
        ))]  # fmt: skip
        if code == 0 and process.step + 1 < len(process.plan.steps):
            self._spawn(self.executions[process.execution], process.plan, process.step + 1)
            return events
        ended = executor.AttemptFinished(
            at=finished.at, taskRunId=wd_tr, attempt=number, success=code == 0 and finished.success,
            reason=None if code == 0 else f"task '{process.action.work.taskId}' failed", exitCode=code,
        )  # fmt: skip
        return [*events, (process.execution, ended)]

    def _reap(self, block: bool) -> list[tuple[str, Any]]:
        """Collect the attempts whose process ended (or whose deadline passed) as events."""
        done: list[tuple[str, Any]] = []
        while True:
            for key, process in list(self.processes.items()):
                code = process.popen.poll()
                timed_out = False
                if code is None and process.deadline is not None and time.monotonic() > process.deadline:
                    process.popen.kill()
                    code = process.popen.wait()
                    timed_out = True
                if code is None:
                    continue
                del self.processes[key]
                text = process.termination_file.read_text() if process.termination_file.exists() else None
                result = parse_termination_message(text, code)
                log_text = process.log_file.read_text(errors="replace") if process.log_file.exists() else ""
                execution = self.executions[process.execution]
                if log_text.strip():
                    self.on_log(execution, process.action, log_text)
                work = process.action.work
                timeout = f"timeout after {process.action.timeoutSeconds:g}s" if timed_out else None
                finished = attempt_finished(work.taskRunId, work.attempt, result, code, utcnow(), process.started,
                                            failure=timeout, timed_out=timed_out)  # fmt: skip
                if process.step is None:
                    done.append((process.execution, finished))
                else:
                    done += self._step_ended(key, process, code, finished)
            if done or not block or not self.processes:
                return done
            warm.wait_any([p.popen for p in self.processes.values()], 0.1)
