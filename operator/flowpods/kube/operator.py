"""The kopf operator: watches Flows, Executions and worker pods, and drives executions with the executor.

Thin by design. kopf delivers watch events; each one updates an in-memory view and pokes the execution
it concerns. One reconcile at a time per execution reads the stored status and the pods, asks the pure
executor what changed, commits the new status (optimistic concurrency on resourceVersion), and only then
creates pods or child executions under deterministic names, so a create repeated after a crash is a
harmless 409. Spans are derived from the committed status, never from this process's memory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import kopf
from croniter import croniter

from flowpods.core import engine
from flowpods.core.engine import Admit, AttemptFinished, Kill, KillSubflow, RunTask, Start, StartSubflow, StopTask
from flowpods.core.model import Flow, FlowError
from flowpods.core.spans import spans_to_export
from flowpods.core.status import ExecutionStatus, State, TaskRun
from flowpods.kube import (
    health,  # noqa: F401 - registers the liveness probe on /healthz
    resources,
)
from flowpods.kube.client import Conflict, Kube, load_client_config
from flowpods.kube.config import OperatorConfig, PodCleanup, loopback_worker_endpoint
from flowpods.kube.resources import ANNOTATION_KILL, LABEL_EXECUTION, LABEL_FLOW
from flowpods.local.loader import flow_document
from flowpods.telemetry.fine import FineTracer
from flowpods.telemetry.otel import SpanRecordExporter, TraceLevel, tracer_provider_from_env

log = logging.getLogger("flowpods.kube.operator")
Key = tuple[str, str]  # (Kubernetes namespace, name)
RETRY_AFTER_ERROR = 5.0


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Outcome:
    """What one reconcile did, for the event-loop side to act on."""

    body: dict[str, Any] | None = None
    wake_at: datetime | None = None
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    export: tuple[str, list[Any], int] | None = None  # spans to send once the change's actions are done
    finished: bool = False


class Operator:
    """The in-memory view of the cluster and the per-execution reconcile loops."""

    def __init__(
        self, config: OperatorConfig, kube: Kube, exporter: SpanRecordExporter | None, fine: FineTracer | None = None
    ):
        self.config, self.exporter, self.fine = config, exporter, fine
        self.kube = fine.wrap(kube) if fine is not None else kube
        self.executions: dict[Key, dict[str, Any]] = {}
        self.pods: dict[Key, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.deleted_pods: dict[Key, set[str]] = defaultdict(set)
        self.children: dict[Key, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.flows: dict[Key, dict[str, Any]] = {}
        self.pokes: dict[Key, asyncio.Event] = {}
        self.loops: dict[Key, asyncio.Task[None]] = {}
        self.timers: dict[Key, asyncio.TimerHandle] = {}
        self.schedulers: dict[Key, tuple[int | None, asyncio.Task[None]]] = {}
        # flow concurrency: executions let run but perhaps not yet RUNNING in the view, per (namespace, flow)
        self.admission = threading.Lock()
        self.admitted: dict[Key, set[str]] = defaultdict(set)

    # -- the view ---------------------------------------------------------------------------------------

    def saw_execution(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        parent = next((o["name"] for o in meta.get("ownerReferences") or [] if o.get("kind") == "Execution"), None)
        if event_type == "DELETED":
            self.executions.pop(key, None)
            self.pods.pop(key, None)
            self.deleted_pods.pop(key, None)
            if parent:
                self.children[(meta["namespace"], parent)].pop(meta["name"], None)
            return
        if _newer(body, self.executions.get(key)):
            self.executions[key] = body
        if parent:
            self.children[(meta["namespace"], parent)][meta["name"]] = body
            self.poke((meta["namespace"], parent))
        self.poke(key)

    def saw_pod(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        owner = next((o["name"] for o in meta.get("ownerReferences") or [] if o.get("kind") == "Execution"), None)
        if owner is None:
            return
        key = (meta["namespace"], owner)
        if event_type == "DELETED":
            self.pods[key].pop(meta["name"], None)
            self.deleted_pods[key].add(meta["name"])
        elif _newer(body, self.pods[key].get(meta["name"])):
            self.pods[key][meta["name"]] = body
        self.poke(key)

    def saw_flow(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if event_type == "DELETED":
            self.flows.pop(key, None)
        else:
            self.flows[key] = body
        self.sync_scheduler(key)

    def flow_resource_for(self, namespace: str, flow_namespace: str, flow_id: str) -> str | None:
        """The Flow resource (in this Kubernetes namespace) holding the Kestra flow namespace.id."""
        for (ns, name), body in self.flows.items():
            document = flow_document(body)
            if ns == namespace and document.get("namespace") == flow_namespace and document.get("id") == flow_id:
                return name
        return None

    # -- flow concurrency limits -------------------------------------------------------------------------

    def _flow_key(self, execution: dict[str, Any]) -> Key:
        return execution["metadata"]["namespace"], ((execution.get("spec") or {}).get("flowRef") or {}).get("name", "")

    def _running(self, flow_key: Key) -> set[str]:
        """Executions of the flow that hold a place: running in the view, or admitted by this process."""
        running, finished = set(self.admitted[flow_key]), set()
        for (ns, name), body in list(self.executions.items()):
            if (ns, ((body.get("spec") or {}).get("flowRef") or {}).get("name")) != flow_key:
                continue
            state = (body.get("status") or {}).get("state")
            if state and State(state).terminal:
                finished.add(name)
            elif state and state != State.QUEUED.value:
                running.add(name)
        self.admitted[flow_key] -= finished
        return running - finished

    def _may_run(self, execution: dict[str, Any], limit: int) -> bool:
        """Admit the execution if the flow has a free place and it is among the oldest waiting."""
        key, name = self._flow_key(execution), execution["metadata"]["name"]
        with self.admission:
            running = self._running(key)
            if name in running:
                return True
            free = limit - len(running)
            waiting = sorted(
                (body["metadata"].get("creationTimestamp", ""), n)
                for (ns, n), body in list(self.executions.items())
                if (ns, ((body.get("spec") or {}).get("flowRef") or {}).get("name")) == key
                and (body.get("status") or {}).get("state") in (None, State.QUEUED.value)
            )
            if free > 0 and name in [n for _, n in waiting[:free]] + ([name] if not waiting else []):
                self.admitted[key].add(name)
                return True
            return False

    def _release(self, execution: dict[str, Any]) -> None:
        """An execution ended (and the view says so): wake the executions of its flow that wait for a place."""
        key = self._flow_key(execution)
        with self.admission:
            self.admitted[key].discard(execution["metadata"]["name"])
        for (ns, name), body in list(self.executions.items()):
            flow = ((body.get("spec") or {}).get("flowRef") or {}).get("name")
            if (ns, flow) == key and (body.get("status") or {}).get("state") == State.QUEUED.value:
                self.poke((ns, name))

    # -- the per-execution loop -------------------------------------------------------------------------

    def poke(self, key: Key) -> None:
        self.pokes.setdefault(key, asyncio.Event()).set()
        task = self.loops.get(key)
        if task is None or task.done():
            self.loops[key] = asyncio.create_task(self._loop(key), name=f"reconcile {key[0]}/{key[1]}")

    def poke_at(self, key: Key, when: datetime) -> None:
        if (timer := self.timers.pop(key, None)) is not None:
            timer.cancel()
        delay = max((when - utcnow()).total_seconds(), 0.0)
        self.timers[key] = asyncio.get_running_loop().call_later(delay, self.poke, key)

    async def _loop(self, key: Key) -> None:
        poke = self.pokes[key]
        while poke.is_set():
            poke.clear()
            body = self.executions.get(key)
            if body is None:
                break
            try:
                outcome = await asyncio.to_thread(self.reconcile, key, body)
            except Conflict:
                fresh = await asyncio.to_thread(self.kube.get, "executions", *key)
                if fresh is None:
                    self.executions.pop(key, None)
                    break
                self.executions[key] = fresh
                poke.set()
                continue
            except Exception:
                log.exception("reconciling execution %s/%s failed; retrying in %ss", *key, RETRY_AFTER_ERROR)
                self.poke_at(key, utcnow() + timedelta(seconds=RETRY_AFTER_ERROR))
                continue
            self._after(key, outcome)
        self.loops.pop(key, None)

    def _after(self, key: Key, outcome: Outcome) -> None:
        if outcome.body is not None:
            if _newer(outcome.body, self.executions.get(key)):
                self.executions[key] = outcome.body
            if outcome.finished:
                self._release(outcome.body)
            for kind, reason, message in outcome.events:
                kopf.event(outcome.body, type=kind, reason=reason, message=message)
        if outcome.wake_at is not None:
            self.poke_at(key, outcome.wake_at)

    # -- one reconcile (runs in a thread; all cluster I/O is here) --------------------------------------

    def reconcile(self, key: Key, execution: dict[str, Any]) -> Outcome:
        meta = execution["metadata"]
        if meta.get("deletionTimestamp"):
            return Outcome()
        now = utcnow()
        stored = resources.stored_flow(execution)
        if stored is None:
            return self._start(execution, now)
        flow, revision = stored
        run = resources.run_info(execution, flow, revision)
        status = resources.stored_status(execution) or ExecutionStatus()
        flow_doc = (execution.get("status") or {}).get("flow")
        if status.state.terminal:
            return self._finished(key, execution, flow, run, status, now)

        pods = dict(self.pods.get(key, {}))
        deleted = set(self.deleted_pods.get(key, set()))
        children = dict(self.children.get(key, {}))
        events: list[Any] = []
        annotations = meta.get("annotations") or {}
        if str(annotations.get(ANNOTATION_KILL, "")).lower() == "true":
            events.append(Kill(at=now))
        elif status.state == State.QUEUED and flow.concurrency and self._may_run(execution, flow.concurrency.limit):
            events.append(Admit(at=now))
        for tr in status.taskRuns:
            if tr.state.terminal:
                continue
            if tr.attempts and not tr.attempts[-1].state.terminal:
                attempt = tr.attempts[-1]
                name = resources.pod_name(meta["name"], tr.id, attempt.number)
                pod = pods.get(name)
                if pod is None and name not in deleted:
                    pod = self.kube.get_pod(meta["namespace"], name)  # not in the view yet (a restart)
                    if pod is not None:
                        pods[name] = pod
                if pod is not None:
                    observed = resources.observe_pod(pod, attempt)
                    if observed is not None:
                        events.append(observed)
                elif name in deleted:
                    events.append(resources.pod_deleted(name, tr.id, attempt.number))
            if tr.child and tr.child in children:
                finished = resources.child_finished(children[tr.child], tr.id)
                if finished is not None:
                    events.append(finished)

        decision = engine.advance(flow, run, status, events, now)
        with self._fine_step(run, decision.status.changes[-1].n if decision.changed else None):
            return self._carry_out(execution, flow, run, decision, events, pods, children, flow_doc, revision, now)

    def _fine_step(self, run: Any, change: int | None) -> AbstractContextManager[None]:
        """With FLOWPODS_TRACES=FINE, the work that commits a change is traced under its EXECUTOR span."""
        return self.fine.reconcile(run, change) if self.fine is not None and change is not None else nullcontext()

    def _carry_out(
        self,
        execution: dict[str, Any],
        flow: Flow,
        run: Any,
        decision: engine.Decision,
        events: list[Any],
        pods: dict[str, Any],
        children: dict[str, Any],
        flow_doc: dict[str, Any] | None,
        revision: int | None,
        now: datetime,
    ) -> Outcome:
        """Commit the decision, then act on it: stop, create, clean up."""
        meta = execution["metadata"]
        new_status = decision.status
        outcome = Outcome(wake_at=decision.wakeAt)
        if decision.changed or self._export_pending(new_status):
            outcome.body = self._commit(execution, run, flow, new_status, flow_doc, revision, outcome)
            if new_status.state.terminal and decision.changed:
                outcome.events.append(_final_event(run.id, new_status))
        for event in events:  # a pod that cannot pull its image would wait forever: it is done with
            if isinstance(event, AttemptFinished) and (event.reason or "").startswith("image pull error") and event.pod:
                self.kube.delete_pod(meta["namespace"], event.pod)
        for action in decision.actions:
            if isinstance(action, StopTask):
                self.kube.delete_pod(meta["namespace"], resources.pod_name(meta["name"], action.taskRunId,
                                                                           action.attempt))  # fmt: skip
            elif isinstance(action, KillSubflow):
                self.kube.annotate("executions", meta["namespace"], action.name, {ANNOTATION_KILL: "true"})
        target = outcome.body or execution

        def lost(tr: TaskRun) -> bool:
            """The status says it is under way, but its pod or child is not in the view."""
            if tr.attempts:
                return resources.pod_name(meta["name"], tr.id, tr.attempts[-1].number) not in pods
            return tr.child is not None and tr.child not in children

        flow_name = (execution.get("spec") or {}).get("flowRef", {}).get("name", flow.id)
        for action in engine.pending_actions(flow, run, new_status, now, lost):
            if isinstance(action, RunTask):
                self.kube.create_pod(resources.build_pod(self.config, target, run, flow_name, action))
            elif isinstance(action, StartSubflow):
                self._create_child(target, action)
        if new_status.state.terminal:
            outcome.finished = True
            self._cleanup(meta["namespace"], meta["name"], new_status, pods)
        self._export(outcome)
        return outcome

    def _start(self, execution: dict[str, Any], now: datetime) -> Outcome:
        meta, spec = execution["metadata"], execution.get("spec") or {}
        flow_name = (spec.get("flowRef") or {}).get("name", "")
        flow_resource = self.kube.get("flows", meta["namespace"], flow_name) if flow_name else None
        flow: Flow | None = None
        problem = None
        if resources.depth(execution) > engine.MAX_SUBFLOW_DEPTH:
            problem = f"subflows nest deeper than {engine.MAX_SUBFLOW_DEPTH}"
        elif flow_resource is None:
            problem = f"flow '{flow_name}' not found in namespace {meta['namespace']}"
        else:
            try:
                flow = resources.load_flow(flow_resource)
            except FlowError as exc:
                problem = f"flow '{flow_name}' is invalid: {exc}"
            else:
                if flow.disabled:
                    problem = f"flow '{flow_name}' is disabled"
        revision = (flow_resource or {}).get("metadata", {}).get("generation")
        if flow is None or problem is not None:
            placeholder = Flow.model_construct(id=flow_name or "unknown", namespace=meta["namespace"])
            run = resources.run_info(execution, placeholder, revision)
            status = engine.failed_start(run, problem or "cannot start", now)
            flow_doc = None
            actions: list[Any] = []
        else:
            run = resources.run_info(execution, flow, revision)
            queued = flow.concurrency is not None and not self._may_run(execution, flow.concurrency.limit)
            behavior = flow.concurrency.behavior if flow.concurrency else "QUEUE"
            flow_doc = resources.flow_json(flow.model_dump(mode="json", by_alias=True, exclude_unset=True))
            if queued and behavior != "QUEUE":
                refused = State.CANCELLED if behavior == "CANCEL" else State.FAILED
                reason = f"flow '{flow_name}' already runs {flow.concurrency.limit} executions (its concurrency limit)"
                status, actions = engine.failed_start(run, reason, now, refused), []
            else:
                start = Start(at=now, inputs=spec.get("inputs") or {}, queued=queued)
                decision = engine.advance(flow, run, None, [start], now)
                status, actions = decision.status, decision.actions
        with self._fine_step(run, status.changes[-1].n):
            outcome = Outcome()
            outcome.body = self._commit(execution, run, flow, status, flow_doc, revision, outcome)
            if status.state.failed:
                outcome.events.append(("Warning", status.state.value.capitalize(), status.error or "failed"))
            elif status.state == State.QUEUED:
                outcome.events.append(
                    ("Normal", "Queued", f"waiting for a place: flow '{flow_name}' has a concurrency limit")
                )
            else:
                outcome.events.append(
                    ("Normal", "Started", f"running flow {run.namespace}.{run.flowId} rev {revision}")
                )
            for action in actions:
                if isinstance(action, RunTask) and flow is not None:
                    self.kube.create_pod(resources.build_pod(self.config, outcome.body, run, flow_name, action))
                elif isinstance(action, StartSubflow):
                    self._create_child(outcome.body, action)
            self._export(outcome)
        return outcome

    def _finished(self, key: Key, execution: dict[str, Any], flow: Flow, run: Any, status: ExecutionStatus,
                  now: datetime) -> Outcome:  # fmt: skip
        """A finished execution: retry a failed export, then clean-up and TTL."""
        outcome = Outcome(finished=True)
        if self._export_pending(status):
            flow_doc = (execution.get("status") or {}).get("flow")
            outcome.body = self._commit(execution, run, flow, status, flow_doc, run.flowRevision, outcome)
            self._export(outcome)
        self._cleanup(key[0], key[1], status, self.pods.get(key, {}))
        ttl = self.config.execution_ttl_seconds
        if ttl is not None and status.endDate is not None:
            expires = status.endDate + timedelta(seconds=ttl)
            if expires <= now:
                self.kube.delete("executions", *key)
            else:
                outcome.wake_at = expires
        return outcome

    def _export_pending(self, status: ExecutionStatus) -> bool:
        """Spans of committed changes not yet exported (an export failed, or its rollback was stored)."""
        exporting = self.exporter is not None and self.config.traces != TraceLevel.DISABLED
        return exporting and bool(status.changes) and status.exported < status.changes[-1].n

    def _commit(
        self,
        execution: dict[str, Any],
        run: Any,
        flow: Flow | None,
        status: ExecutionStatus,
        flow_doc: dict[str, Any] | None,
        revision: int | None,
        outcome: Outcome,
    ) -> dict[str, Any]:
        """Store the status with the span watermark moved past the spans it completes.

        The spans themselves leave in `_export`, after the pods of this change were created, so tracing
        adds nothing to the time between one task and the next.
        """
        fresh, watermark = spans_to_export(run, flow, status)
        previous = status.exported
        status.exported = watermark
        body = dict(execution)
        body["status"] = resources.status_body(run, status, flow_doc, revision, self.config.traces)
        stored = self.kube.replace_status("executions", body)
        if fresh and self.exporter is not None and self.config.traces != TraceLevel.DISABLED:
            outcome.export = (run.id, fresh, previous)
        return stored

    def _export(self, outcome: Outcome) -> None:
        """Export the spans the last commit completed; on failure store the watermark back at once.

        The watermark was stored first, so a restart never exports a span twice; a failed export is
        stored back and retried, so a collector outage loses nothing. Only a crash between the commit
        and the export can lose spans.
        """
        if outcome.export is None or outcome.body is None or self.exporter is None:
            return
        name, fresh, previous = outcome.export
        outcome.export = None
        if self.exporter.export(fresh):
            return
        log.warning("exporting %d spans of %s failed; retrying in 10s", len(fresh), name)
        rollback = dict(outcome.body)
        rollback["status"] = {**outcome.body["status"], "exported": previous}
        outcome.body = self.kube.replace_status("executions", rollback)
        outcome.wake_at = utcnow() + timedelta(seconds=10)

    def _create_child(self, parent: dict[str, Any], action: StartSubflow) -> None:
        namespace = parent["metadata"]["namespace"]
        flow_name = self.flow_resource_for(namespace, action.namespace, action.flowId) or action.flowId
        self.kube.create("executions", resources.child_execution(parent, action, flow_name))

    def _cleanup(self, namespace: str, name: str, status: ExecutionStatus, pods: dict[str, Any]) -> None:
        policy = self.config.pod_cleanup
        if policy == PodCleanup.KEEP or (policy == PodCleanup.ON_SUCCESS and status.state != State.SUCCESS):
            return
        for pod_name in list(pods):
            self.kube.delete_pod(namespace, pod_name)

    # -- schedules --------------------------------------------------------------------------------------

    def sync_scheduler(self, key: Key) -> None:
        """One asyncio task per Flow with Schedule triggers; restarted when the Flow's spec changes."""
        body = self.flows.get(key)
        generation = body["metadata"].get("generation") if body else None
        current = self.schedulers.get(key)
        if current is not None and current[0] == generation and body is not None:
            return
        if current is not None:
            current[1].cancel()
            self.schedulers.pop(key, None)
        if body is None:
            return
        try:
            flow = resources.load_flow(body)
        except FlowError:
            return
        if flow.disabled or not resources.schedules(flow):
            return
        task = asyncio.create_task(self._schedule(key, flow), name=f"schedule {key[0]}/{key[1]}")
        self.schedulers[key] = (generation, task)

    async def _schedule(self, key: Key, flow: Flow) -> None:
        namespace, name = key
        nexts = {}
        for trigger in resources.schedules(flow):
            zone = ZoneInfo(trigger.timezone)
            nexts[trigger.id] = (trigger, croniter(trigger.cron, utcnow().astimezone(zone)).get_next(datetime))
        while True:
            trigger_id, (trigger, due) = min(nexts.items(), key=lambda item: item[1][1])
            await asyncio.sleep(max((due - utcnow()).total_seconds(), 0.0))
            stamp = int(due.timestamp())
            body = {
                "apiVersion": resources.API_VERSION,
                "kind": "Execution",
                "metadata": {
                    "name": f"{engine.dns_label(name, 40)}-{engine.dns_label(trigger.id, 20)}-{stamp}",
                    "namespace": namespace,
                    "labels": {LABEL_FLOW: resources.label_value(name), resources.LABEL_MANAGED_BY: "flowpods"},
                },
                "spec": {
                    "flowRef": {"name": name},
                    "inputs": trigger.inputs,
                    "trigger": {"type": "schedule", "data": {"triggerId": trigger.id, "date": due.isoformat()}},
                },
            }
            try:
                created = await asyncio.to_thread(self.kube.create, "executions", body)
                log.info("schedule %s of flow %s/%s: %s", trigger.id, namespace, name,
                         "started an execution" if created else "already started")  # fmt: skip
            except Exception:
                log.exception("schedule %s of flow %s/%s could not start an execution", trigger.id, namespace, name)
            zone = ZoneInfo(trigger.timezone)
            nexts[trigger_id] = (trigger, croniter(trigger.cron, due.astimezone(zone)).get_next(datetime))


def _final_event(name: str, status: ExecutionStatus) -> tuple[str, str, str]:
    took = ""
    if status.startDate and status.endDate:
        took = f" in {resources.format_duration((status.endDate - status.startDate).total_seconds())}"
    if status.state in (State.SUCCESS, State.WARNING):
        return ("Normal", status.state.value.capitalize(), f"execution {name} ended {status.state.value}{took}")
    return ("Warning", status.state.value.capitalize(), f"execution {name} ended {status.state.value}{took}: "
            f"{status.error or ''}".rstrip(": "))  # fmt: skip


def _newer(body: dict[str, Any], than: dict[str, Any] | None) -> bool:
    if than is None:
        return True
    try:
        return int(body["metadata"]["resourceVersion"]) >= int(than["metadata"]["resourceVersion"])
    except (KeyError, ValueError):
        return True


# --- kopf wiring ---------------------------------------------------------------------------------------

OPERATOR: Operator | None = None
API: Any = None  # the running flowpods.api.Server


def _operator() -> Operator:
    assert OPERATOR is not None, "the operator is configured at start-up"
    return OPERATOR


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    global OPERATOR
    config = OperatorConfig.from_env()
    load_client_config()
    exporter = SpanRecordExporter.from_env(default_service="flowpods")
    fine = None
    if config.traces == TraceLevel.FINE:
        fine = FineTracer(tracer_provider_from_env("flowpods"))
    OPERATOR = Operator(config, Kube(), exporter, fine)
    settings.persistence.finalizer = "flowpods.io/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="flowpods.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="flowpods.io", key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.label_selectors["v1", "pods"] = LABEL_EXECUTION
    settings.execution.max_workers = 8
    log.info("flowpods operator: %s", config.model_dump(mode="json"))


@kopf.on.startup()
async def start_api(**_: Any) -> None:
    """The HTTP API (flowpods.api.app) on its own port, in kopf's event loop; FLOWPODS_API_PORT=0 disables it."""
    global API
    if OPERATOR is None:
        raise kopf.TemporaryError("waiting for the operator to be configured", delay=0.1)
    if OPERATOR.config.api_port == 0 or API is not None:
        return
    from flowpods.api import app as api

    view = OPERATOR.executions
    API = await api.serve(OPERATOR.config, OPERATOR.kube, view=lambda ns, name: view.get((ns, name)))


@kopf.on.cleanup()
async def stop_api(**_: Any) -> None:
    global API
    if API is not None:
        await API.stop()
        API = None


@kopf.on.cleanup()
def shutdown(**_: Any) -> None:
    if OPERATOR is not None and OPERATOR.exporter is not None:
        OPERATOR.exporter.shutdown()
    if OPERATOR is not None and OPERATOR.fine is not None:
        OPERATOR.fine.provider.shutdown()


@kopf.on.event(resources.GROUP, resources.VERSION, "executions")
async def execution_event(type: str | None, body: kopf.Body, **_: Any) -> None:
    _operator().saw_execution(type, _plain(body))


@kopf.on.event("", "v1", "pods", labels={LABEL_EXECUTION: kopf.PRESENT})
async def pod_event(type: str | None, body: kopf.Body, **_: Any) -> None:
    _operator().saw_pod(type, _plain(body))


@kopf.on.event(resources.GROUP, resources.VERSION, "flows")
async def flow_event(type: str | None, body: kopf.Body, **_: Any) -> None:
    _operator().saw_flow(type, _plain(body))


@kopf.on.resume(resources.GROUP, resources.VERSION, "flows")
@kopf.on.create(resources.GROUP, resources.VERSION, "flows")
@kopf.on.update(resources.GROUP, resources.VERSION, "flows", field="spec")
def validate_flow(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    """Ready or Invalid, with the problems named on the status and in an Event."""
    status, flow, problem = resources.flow_status(_plain(body), utcnow())
    patch.status.update(status)
    if problem is not None:
        kopf.warn(body, reason="Invalid", message=problem)
    elif flow is not None:
        kopf.event(body, type="Normal", reason="Valid",
                   message=f"flow {flow.namespace}.{flow.id}: {len(flow.all_tasks())} tasks")  # fmt: skip


def _plain(body: Any) -> dict[str, Any]:
    """The event's object as a plain dict. Shallow: kopf hands each event a freshly decoded object, and
    the operator never mutates nested parts (it copies what it changes), so a deep copy is wasted CPU."""
    return dict(body)


RECONCILE_THREADS = 32  # reconciles wait on the API server most of the time; asyncio's default (6 here) starves


async def _operate(config: OperatorConfig) -> None:
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(RECONCILE_THREADS, thread_name_prefix="reconcile")
    )
    await kopf.operator(
        standalone=True,
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
        # port 0 means no endpoint: kopf would read it as "unset" and bind port 80
        liveness_endpoint=f"http://0.0.0.0:{config.health_port}/healthz" if config.health_port else None,
    )


def run(config: OperatorConfig | None = None) -> int:
    """`flowpods operator`: run until stopped (2 at once when the settings would lose the workers' spans)."""
    if config is None:
        problem = loopback_worker_endpoint(os.environ)
        if problem:
            print(f"flowpods operator: refusing to start: {problem}", file=sys.stderr)
            return 2
    config = config or OperatorConfig.from_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # one line per watch event is noise
    asyncio.run(_operate(config))
    return 0
