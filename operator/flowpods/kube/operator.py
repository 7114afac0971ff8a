"""The operator, on kopf: watches Flows (kopf), Executions and pods (kube/watches.py), drives executions.

A thin shell around the core, in Tekton's order: observe (the in-memory view, filled by the watch events,
and the pods of one execution), decide (the pure executor, admission and start rules), commit
(the new status, with optimistic concurrency on resourceVersion), act (create pods or child executions
under deterministic names, so a create repeated after a crash is a harmless 409). The spans of committed
changes are sent by a background thread (kube/background_export.py), never on the path between two tasks;
their watermark is stored right after the collector's answer: a running execution's in its namespace's ledger
by that thread, until its next commit carries it; a finished one's by its own reconcile. One reconcile at a time
per execution.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import os
import socket
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

import kopf
from pydantic import ValidationError

from flowpods.core import admission, compaction, executor, notices, start, workdir
from flowpods.core import export as span_export
from flowpods.core import metrics as measures
from flowpods.core.clock import back_off, utcnow
from flowpods.core.model import Flow, build_validators
from flowpods.core.snapshot import flow_snapshot
from flowpods.core.status import ExecutionStatus, RunInfo, State, TaskRun
from flowpods.kube import flowtriggers as flow_triggers
from flowpods.kube import (
    health,  # noqa: F401 - registers the liveness probe on /healthz
    resources,
    watches,
)
from flowpods.kube.background_export import BackgroundExport
from flowpods.kube.client import Conflict, Kube, load_client_config
from flowpods.kube.config import OperatorConfig, PodCleanup, invalid_settings, loopback_worker_endpoint
from flowpods.kube.replays import replayed
from flowpods.kube.resources import ANNOTATION_KILL
from flowpods.kube.schedules import Scheduler
from flowpods.kube.span_ledger import ConfigMapLedger
from flowpods.kube.view import View, pod_essence, state_of
from flowpods.kube.watches import Watch
from flowpods.telemetry.fine import FineTracer
from flowpods.telemetry.metrics import Metrics, metrics_from_env
from flowpods.telemetry.otel import SpanRecordExporter, tracer_provider_from_env
from flowpods.telemetry.otlp_settings import TraceLevel

log = logging.getLogger("flowpods.kube.operator")
HOST = socket.gethostname()  # the Events' reportingInstance (the pod's name in a cluster)
Key = tuple[str, str]  # (Kubernetes namespace, name)
RETRY_AFTER_ERROR = 5.0
MAX_RETRY_AFTER_ERROR = 60.0
TERMINAL_STATES = frozenset(state.value for state in State if state.terminal)
GC_THRESHOLDS = (20_000, 10, 10)
"""The cyclic collector's thresholds (Python's are 700, 10, 10): a young collection every 20,000 objects, which
cut the collector's time in the throughput bench by a half with the same memory at 1,000 executions."""
RECURSION_LIMIT = 30_000
"""kopf decodes every watched object with `json`, which recurses once per level: the API server admits
objects nested 10,000 deep, and at Python's default limit (1,000) one of them would stop the operator.
30,000 leaves room for the copies made of it; the objects themselves are refused with a reason."""
EXPORT_TIMEOUT = 5.0  # seconds one export may take, retries included; a failed one is tried again later


@dataclass
class Outcome:
    """What one reconcile did, for the event-loop side to act on."""

    body: dict[str, Any] | None = None
    wake_at: datetime | None = None
    events: list[notices.Notice] = field(default_factory=list)
    finished: bool = False
    pods: list[dict[str, Any]] = field(default_factory=list)  # the pods it created, as their creates answered
    # its one write stored the span watermark alone: that write's own watch event has nothing to reconcile
    watermark_only: bool = False


@dataclass
class Subject:
    """The execution one reconcile works on: its resource, the flow it runs, and what the view shows of it."""

    execution: dict[str, Any]
    run: RunInfo
    flow: Flow | None
    flow_name: str
    flow_doc: dict[str, Any] | None
    revision: int | None
    now: datetime
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    children: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending_wake: datetime | None = None  # when a pod that has not started yet will have waited too long

    @property
    def namespace(self) -> str:
        return str(self.execution["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.execution["metadata"]["name"])

    def lost(self, tr: TaskRun) -> bool:
        """The status says it is under way, but its pod or child is not in the view."""
        if tr.attempts:
            return resources.pod_name(self.name, tr.id, tr.attempts[-1].number) not in self.pods
        return tr.child is not None and tr.child not in self.children


class Operator:
    """The in-memory view of the cluster and the per-execution reconcile loops."""

    def __init__(
        self,
        config: OperatorConfig,
        kube: Kube,
        exporter: SpanRecordExporter | None,
        fine: FineTracer | None = None,
        metrics: Metrics | None = None,
    ):
        self.config, self.exporter, self.fine, self.metrics = config, exporter, fine, metrics
        self.reconciling = 0  # reconciles running now (a metric, observed)
        if metrics is not None:
            metrics.observe(self.gauges)
            metrics.record(measures.initial())
        self.kube = fine.wrap(kube) if fine is not None else kube
        self.view = View()
        self.scheduler = Scheduler(self.kube)
        # the status commits made while the reconcile's own thread creates the pods they start (`_commit_and_create`)
        self.commits = ThreadPoolExecutor(config.reconcile_threads, thread_name_prefix="commit")
        # Events are posted in a thread of their own, in order: neither the event loop nor a reconcile waits
        self.events = ThreadPoolExecutor(1, thread_name_prefix="events")
        # per execution, only while there is something to do: poked and not yet reconciled, its reconcile loop,
        # its wake-up timer (an operator runs for months: what each execution leaves here must go with it)
        self.poked: set[Key] = set()
        self.loops: dict[Key, asyncio.Task[None]] = {}
        self.timers: dict[Key, asyncio.TimerHandle] = {}
        # the resourceVersion of a write that stored only the span watermark, until its own watch event came
        self.quiet_writes: dict[Key, str] = {}
        # flow concurrency: executions let run but perhaps not yet RUNNING in the view, per (namespace, flow)
        self.admission = threading.Lock()
        self.admitted: dict[Key, set[str]] = defaultdict(set)
        # the spans of committed changes, sent by a background thread (None: tracing off, or nowhere to send)
        self.exports: BackgroundExport | None = None
        if exporter is not None and config.traces != TraceLevel.DISABLED:
            ledger = ConfigMapLedger(kube)  # the export thread's own writes are not the executions' fine spans
            self.exports = BackgroundExport(exporter, self._wake_from_thread, self._record, ledger=ledger)
        self.loop: asyncio.AbstractEventLoop | None = None
        # the last error handling each execution (logged once while it repeats) and how often it was retried
        self.errors: dict[Key, str] = {}
        self.error_retries: dict[Key, int] = {}

    # -- the view (kopf's watch events) ----------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """In kopf's event loop, before the first event: the export thread, which pokes executions in `loop`."""
        self.loop = loop
        if self.exports is not None:
            self.exports.start()

    def stop(self) -> None:
        self.commits.shutdown(wait=False)
        self.events.shutdown(wait=False)
        if self.exports is not None:
            self.exports.stop(EXPORT_TIMEOUT)

    def _wake_from_thread(self, key: Hashable) -> None:
        """The export thread asks for an execution's confirmed span watermark to be stored."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.poke, cast(Key, key), context=self._fresh_context())

    def saw_execution(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        own = (meta["namespace"], meta["name"])
        if event_type == "DELETED":
            self._forget(own)
        quiet = self.quiet_writes.pop(own, None) == meta.get("resourceVersion")
        for key in self.view.saw_execution(event_type, body):
            if not (quiet and key == own):  # the echo of a watermark's write (a parent still sees its child)
                self.poke(key)

    def saw_pod(self, event_type: str | None, body: dict[str, Any]) -> None:
        for key in self.view.saw_pod(event_type, body):
            self.poke(key)

    def saw_from_thread(self, saw: Callable[[str | None, dict[str, Any]], None]) -> watches.Deliver:
        """How a watch's thread (kube/watches.py) hands on its events: `saw` sees each in the event loop, in order."""
        loop = self.loop
        assert loop is not None, "started first"

        def deliver(event_type: str | None, body: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(saw, event_type, body)

        return deliver

    def saw_flow(self, event_type: str | None, body: dict[str, Any]) -> None:
        key = self.view.saw_flow(event_type, body)
        self.scheduler.sync(key, self.view.flows.get(key), self._fresh_context())

    # -- flow concurrency limits (the rules are core.admission's; the lock and the memory are here) ---------

    def _seats(self, flow_key: Key) -> list[admission.Seat]:
        seats = []
        for (ns, name), body in list(self.view.executions.items()):
            if (ns, resources.flow_ref(body)) != flow_key:
                continue
            state = state_of(body)
            seats.append(
                admission.Seat(name, body["metadata"].get("creationTimestamp", ""), State(state) if state else None)
            )
        return seats

    def _may_run(self, execution: dict[str, Any], limit: int) -> bool:
        """Admit the execution if its flow has a free place for it (remembered until the view shows it running)."""
        key, name = (execution["metadata"]["namespace"], resources.flow_ref(execution)), execution["metadata"]["name"]
        with self.admission:
            seats = self._seats(key)
            places = admission.places(seats, self.admitted[key])
            self.admitted[key] -= places.ended
            if not admission.admits(name, seats, places.holding, limit):
                return False
            self.admitted[key].add(name)
            return True

    def _release(self, execution: dict[str, Any]) -> None:
        """An execution ended (and the view says so): wake the executions of its flow that wait for a place."""
        namespace = execution["metadata"]["namespace"]
        key = (namespace, resources.flow_ref(execution))
        with self.admission:
            self.admitted[key].discard(execution["metadata"]["name"])
        for name in self.view.queued_of(*key):
            self.poke((namespace, name))

    # -- the per-execution loop -------------------------------------------------------------------------

    def poke(self, key: Key) -> None:
        self.poked.add(key)
        task = self.loops.get(key)
        if task is None or task.done():
            self.loops[key] = asyncio.create_task(
                self._loop(key), name=f"reconcile {key[0]}/{key[1]}", context=self._fresh_context()
            )

    def poke_at(self, key: Key, when: datetime) -> None:
        if (timer := self.timers.pop(key, None)) is not None:
            timer.cancel()
        delay = max((when - utcnow()).total_seconds(), 0.0)
        self.timers[key] = asyncio.get_running_loop().call_later(delay, self._wake, key, context=self._fresh_context())

    def _wake(self, key: Key) -> None:
        self.timers.pop(key, None)
        self.poke(key)

    def _forget(self, key: Key) -> None:
        """The execution is gone: its timer and its span bookkeeping go with it (a poke already made runs,
        finds nothing in view and ends)."""
        if (timer := self.timers.pop(key, None)) is not None:
            timer.cancel()
        self.quiet_writes.pop(key, None)
        if self.exports is not None:
            self.exports.forget(key)

    @staticmethod
    def _fresh_context() -> contextvars.Context:
        """An empty context for every reconcile loop, timer and schedule task: one takes the context of the code
        that makes it, and a kopf handler's holds its event's whole object (measured: 1,000 executions in flight
        held 997 pods through their loops and timers, about 35 kB each). Events are posted without kopf's
        variables (`post_event`), so nothing needs to be carried over."""
        return contextvars.Context()

    async def _loop(self, key: Key) -> None:
        while key in self.poked:
            self.poked.discard(key)
            body = self.view.executions.get(key)
            if body is None:
                break
            try:
                outcome = await self._timed(key, body)
            except Conflict:
                fresh = await asyncio.to_thread(self.kube.get, "executions", *key)
                if fresh is None:
                    self.view.executions.pop(key, None)
                    self._forget(key)
                    break
                self.view.remember(key, fresh)
                self.poked.add(key)
                continue
            except Exception as exc:
                outcome = await self._on_error(key, body, exc)
            else:
                self.errors.pop(key, None)
                self.error_retries.pop(key, None)
            self._after(key, outcome)
        self.loops.pop(key, None)

    async def _on_error(self, key: Key, body: dict[str, Any], exc: Exception) -> Outcome:
        """An error handling one execution: retried with a back-off when it may pass (the API server busy),
        else the execution ends FAILED with the reason on its status and in an Event. Logged once per
        distinct error, never a silent retry loop."""
        reason = resources.describe_error(exc)
        first = self.errors.get(key) != reason
        self.errors[key] = reason
        if resources.is_transient(exc):
            self.error_retries[key] = retries = self.error_retries.get(key, 0) + 1
            delay = back_off(RETRY_AFTER_ERROR, retries, MAX_RETRY_AFTER_ERROR)
            if first:
                log.warning("reconciling execution %s/%s: %s; retrying (every %ss at most)", *key, reason,
                            MAX_RETRY_AFTER_ERROR)  # fmt: skip
            self.poke_at(key, utcnow() + timedelta(seconds=delay))
            outcome = Outcome()
            if first:
                outcome.body = body
                outcome.events.append(("Warning", "Retrying", f"{reason}; retrying"))
            return outcome
        if first:
            log.error("execution %s/%s cannot go on: %s", *key, reason, exc_info=exc)
        try:
            return await asyncio.to_thread(self._fail, key, reason)
        except Exception as again:
            if first:
                log.error("execution %s/%s: could not record its failure: %s", *key, resources.describe_error(again))
            self.poke_at(key, utcnow() + timedelta(seconds=MAX_RETRY_AFTER_ERROR))
            return Outcome()

    def _fail(self, key: Key, reason: str) -> Outcome:
        """End the execution FAILED with `reason`: its running pods stopped, its running children killed."""
        current = self.kube.get("executions", *key)
        if current is None:
            return Outcome()
        previous = current.get("status") or {}
        state = previous.get("state") if isinstance(previous, dict) else None
        if isinstance(state, str) and state in TERMINAL_STATES:
            return Outcome()  # it already ended: nothing more to write (and no loop of writes)
        body = dict(current)
        body["status"] = resources.failed_status(previous, f"the operator cannot go on: {reason}", utcnow())
        outcome = Outcome(body=self.kube.replace_status("executions", body), finished=True)
        outcome.events.append(("Warning", "Failed", body["status"]["error"]))
        for name, pod in list(self.view.pods.get(key, {}).items()):
            if not resources.pod_ended(pod):
                self.kube.delete_pod(key[0], name)
        for name, child in list(self.view.children.get(key, {}).items()):
            if state_of(child) not in TERMINAL_STATES:
                self.kube.annotate("executions", key[0], name, {ANNOTATION_KILL: "true"})
        return outcome

    async def _timed(self, key: Key, body: dict[str, Any]) -> Outcome:
        """One reconcile in a thread, measured: its duration by result, in flight while it runs."""
        self.reconciling += 1
        started = time.perf_counter()
        try:
            outcome = await asyncio.to_thread(self.reconcile, key, body)
        except Conflict:
            self._record(measures.reconciled(time.perf_counter() - started, "conflict"))
            raise
        except Exception as exc:
            self._record(measures.reconciled(time.perf_counter() - started, "error", type(exc).__name__))
            raise
        finally:
            self.reconciling -= 1
        self._record(measures.reconciled(time.perf_counter() - started, "ok"))
        return outcome

    def _record(self, measurements: Sequence[measures.Measurement]) -> None:
        if self.metrics is not None:
            self.metrics.record(measurements)

    def gauges(self) -> list[measures.Measurement]:
        """The observed metrics, from the view (which the watches rebuild after a restart)."""
        return [
            *measures.runs(self.view.run_states()),
            *measures.workers(self.view.pod_phases()),
            *measures.reconciling(self.reconciling),
        ]

    def _after(self, key: Key, outcome: Outcome) -> None:
        for pod in outcome.pods:
            self.view.created_pod(key, pod)
        if outcome.pods:
            # the next pass (the one the echo of the status write asks for anyway) starts the new pods' pending
            # deadlines: their own watch events may not poke, their progress being what their creates answered
            self.poked.add(key)
        if outcome.body is not None:
            self.view.remember(key, outcome.body)
            if outcome.watermark_only and not outcome.pods:
                self.quiet_writes[key] = outcome.body["metadata"]["resourceVersion"]
            if outcome.finished:
                self._release(outcome.body)
            for kind, reason, message in outcome.events:
                self.post_event(outcome.body, kind, reason, message)
        if outcome.wake_at is not None:
            self.poke_at(key, outcome.wake_at)

    def post_event(self, obj: dict[str, Any], kind: str, reason: str, message: str) -> None:
        """An Event about an Execution, posted in the Events' thread; one the API server refuses is logged."""
        self.events.submit(self._create_event, resources.event_body(obj, kind, reason, message, utcnow(), HOST))

    def _create_event(self, event: dict[str, Any]) -> None:
        try:
            self.kube.create_event(event)
        except Exception as exc:  # an Event is a notice: the status holds the facts
            log.warning("Event %s about %s/%s not posted: %s", event["reason"], event["metadata"]["namespace"],
                        event["involvedObject"]["name"], exc)  # fmt: skip

    # -- one reconcile (runs in a thread; all cluster I/O is here) --------------------------------------

    def reconcile(self, key: Key, execution: dict[str, Any]) -> Outcome:
        """Observe, decide, commit, act, export."""
        if execution["metadata"].get("deletionTimestamp"):
            return Outcome()
        now = utcnow()
        stored = resources.stored_flow(execution)
        if stored is None:
            return self._start(execution, now)
        flow, revision = stored
        subject = Subject(
            execution=execution,
            run=resources.run_info(execution, flow, revision, now),
            flow=flow,
            flow_name=resources.flow_ref(execution),
            flow_doc=(execution.get("status") or {}).get("flow"),
            revision=revision,
            now=now,
            pods=dict(self.view.pods.get(key, {})),
            deleted=set(self.view.deleted_pods.get(key, set())),
            children=dict(self.view.children.get(key, {})),
        )
        status = resources.stored_status(execution) or ExecutionStatus()
        annotations = execution["metadata"].get("annotations") or {}
        requests = executor.requested(annotations, status, now)  # resume, restart (core/controls.py)
        if status.state.terminal and not requests:
            return self._finished(subject, status)
        if annotations.get(ANNOTATION_KILL) and any(isinstance(r, executor.Restart) for r in requests):
            # a restart outlives the kill that ended the execution: its annotation goes first (its watch
            # event reconciles again), so that the restarted execution is not killed at once
            self.kube.annotate("executions", subject.namespace, subject.name, {ANNOTATION_KILL: None})
            return Outcome()
        events = [*requests, *self._observe(subject, flow, status)]
        decided_before = self._decided_before(subject, flow, status, events)
        if decided_before is None:
            # the stored status parsed again and handed over: cheaper than the copy advance would make of `status`,
            # which stays as read (the commit compares with it)
            working = resources.stored_status(execution) or ExecutionStatus()
            decision = executor.advance(flow, subject.run, working, events, now, owned=True)
        else:  # stored first; the requests are acted on in the next pass
            decision, events = decided_before
        with self._fine_step(subject.run, decision.status.changes[-1].n if decision.changed else None):
            outcome = self._carry_out(subject, flow, decision, events, status)
        if decided_before is not None:
            outcome.wake_at = now
        if subject.pending_wake is not None:  # a pod that has not started: look again at its deadline
            outcome.wake_at = min(subject.pending_wake, outcome.wake_at or subject.pending_wake)
        return outcome

    def _observe(self, subject: Subject, flow: Flow, status: ExecutionStatus) -> list[Any]:
        """The events the view holds for this execution: a kill, a free place, its pods' and children's ends."""
        events: list[Any] = []
        annotations = subject.execution["metadata"].get("annotations") or {}
        if str(annotations.get(ANNOTATION_KILL, "")).lower() == "true":
            events.append(executor.Kill(at=subject.now))
        elif status.state == State.QUEUED and flow.concurrency and self._may_run(subject.execution,
                                                                                 flow.concurrency.limit):  # fmt: skip
            events.append(executor.Admit(at=subject.now))
        stepped, in_pods = workdir.workdirs(flow), workdir.inside_workdirs(flow)  # one pod runs a WorkingDirectory
        for tr in status.taskRuns:
            if tr.state.terminal or tr.taskId in in_pods:
                continue
            if tr.attempts and not tr.attempts[-1].state.terminal:
                attempt = tr.attempts[-1]
                name = resources.pod_name(subject.name, tr.id, attempt.number)
                pod = subject.pods.get(name)
                if pod is None and name not in subject.deleted:
                    pod = self.kube.get_pod(subject.namespace, name)  # not in the view yet (a restart)
                    if pod is not None:
                        subject.pods[name] = pod
                if pod is not None:
                    observed = resources.observe(pod, attempt, subject.now, tr.taskId in stepped)
                    limit = self._pending_limit(flow, tr.taskId)
                    expired = None if observed else resources.pending_expired(pod, tr.id, attempt, limit, subject.now)
                    if observed or expired is not None:
                        events += observed or [expired]
                    elif (deadline := resources.pending_deadline(pod, limit)) is not None:
                        subject.pending_wake = min(deadline, subject.pending_wake or deadline)
                elif name in subject.deleted:
                    events.append(resources.pod_deleted(name, tr.id, attempt.number, subject.now))
            if tr.child and tr.child in subject.children:
                finished = resources.child_finished(subject.children[tr.child], tr.id, subject.now)
                if finished is not None:
                    events.append(finished)
        return events

    def _decided_before(
        self, subject: Subject, flow: Flow, status: ExecutionStatus, events: list[Any]
    ) -> tuple[executor.Decision, list[Any]] | None:
        """A decision whose pods were created while its status was being committed, and that was not stored
        (the operator stopped in between, or the commit met a request: a Conflict), when a request (a kill, a
        resume, a restart) has come since: decided again without the request, it asks for the same pods, and
        if one is there, it is that decision which is stored, so that the pods that were created (and may
        have run) are recorded; the request is acted on in the next pass, as if it came just after. Only while
        a request waits (rare): it may read the pods from the API server, which the view may not hold yet."""
        if status.state != State.RUNNING or not any(isinstance(event, executor.REQUESTS) for event in events):
            return None
        observed = [event for event in events if not isinstance(event, executor.REQUESTS)]
        decision = executor.advance(flow, subject.run, status, observed, subject.now)
        creates = executor.pending_actions(flow, subject.run, decision.status, subject.now, subject.lost)
        if not executor.creates_with_commit(flow, status, decision, creates):
            return None
        for action in creates:
            assert isinstance(action, executor.RunTask)  # creates_with_commit: only pods
            name = resources.pod_name(subject.name, action.work.taskRunId, action.work.attempt)
            if name in subject.pods or (name not in subject.deleted and
                                        self.kube.get_pod(subject.namespace, name) is not None):  # fmt: skip
                log.info("execution %s/%s: pod %s was created for a change not stored yet: storing that change "
                         "before acting on the request", subject.namespace, subject.name, name)  # fmt: skip
                return decision, observed
        return None

    def _pending_limit(self, flow: Flow, task_id: str) -> timedelta:
        """How long the task's pod may wait to start: the task's pendingTimeout, else the operator's."""
        try:
            own = flow.task(task_id).pendingTimeout
        except KeyError:
            own = None
        return own or timedelta(seconds=self.config.pending_timeout_seconds)

    def _fine_step(self, run: RunInfo, change: int | None) -> AbstractContextManager[None]:
        """With FLOWPODS_TRACES=FINE, the work that commits a change is traced under its EXECUTOR span."""
        return self.fine.reconcile(run, change) if self.fine is not None and change is not None else nullcontext()

    def _carry_out(
        self, subject: Subject, flow: Flow, decision: executor.Decision, events: list[Any], before: ExecutionStatus
    ) -> Outcome:
        """Commit the decision (or only a span watermark that is due), then act on it: stop, create, clean up."""
        status = decision.status
        outcome = Outcome(wake_at=decision.wakeAt)
        creates = executor.pending_actions(flow, subject.run, status, subject.now, subject.lost)
        together = executor.creates_with_commit(flow, before, decision, creates)  # one round trip, not two
        if together:
            outcome.body, outcome.pods = self._commit_and_create(subject, status, before, creates)
        elif decision.changed:
            if self._nothing_can_fire(subject, before, status):
                status = status.model_copy(update={"triggered": []})
            outcome.body = self._commit(subject, status, before)
            if status.state.terminal and not before.state.terminal:
                outcome.events.append(notices.ended(subject.run.id, status))
        else:
            outcome.body = self._store_watermark(subject, before)
            outcome.watermark_only = outcome.body is not None
        for event in events:  # a pod that cannot pull its image would wait forever: it is done with
            gave_up = isinstance(event, executor.AttemptFinished) and (event.imageUnavailable or event.pendingTimedOut)
            if gave_up and event.pod:
                self.kube.delete_pod(subject.namespace, event.pod)
        for action in decision.actions:
            if isinstance(action, executor.StopTask):
                self.kube.delete_pod(subject.namespace, resources.pod_name(subject.name, action.taskRunId,
                                                                           action.attempt))  # fmt: skip
            elif isinstance(action, executor.KillSubflow):
                self.kube.annotate("executions", subject.namespace, action.name, {ANNOTATION_KILL: "true"})
        if not together:
            outcome.pods = self._create(subject, outcome.body or subject.execution, creates)
        if status.state.terminal:
            outcome.finished = True
            self._stop_unrecorded(subject, status)
            self._cleanup(subject, status)
        return outcome

    def _nothing_can_fire(self, subject: Subject, before: ExecutionStatus, status: ExecutionStatus) -> bool:
        """The execution ends now and no Flow of its namespace has a Flow trigger (listed from the API server):
        the end is committed with `triggered: []`, instead of a marker patch after it, its watch event and its
        reconcile (docs/architecture.md, "Flow triggers")."""
        if not status.state.terminal or before.state.terminal:
            return False
        return not flow_triggers.listeners(self.kube, subject.namespace)

    def _commit_and_create(
        self, subject: Subject, status: ExecutionStatus, before: ExecutionStatus, creates: Sequence[executor.Action]
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Commit the status and create the pods it starts at the same time (`executor.creates_with_commit`
        says when that is safe): between one task's end and the next task's pod, one API round trip instead of
        two. The commit runs in another thread (in this one's context: FINE spans nest as before) and the pods
        are created here, at once, since they are what the next task waits for; both are finished before this
        returns or raises, a failed commit's error first (a Conflict: decided again). A decision committed but
        whose pods were not all created is like a commit followed by a failed create: the next pass creates
        what is missing; a decision whose pods were created but that was not committed is decided again the
        same (or, after a request, by `_decided_before`), and its creates find the pods there."""
        committing = self.commits.submit(contextvars.copy_context().run, self._commit, subject, status, before)
        try:
            pods = self._create(subject, subject.execution, creates)
        except Exception:
            committing.result()  # waits for the commit; its error, if any, is raised first
            raise
        return committing.result(), pods

    def _stop_unrecorded(self, subject: Subject, status: ExecutionStatus) -> None:
        """An ended execution keeps no pod running. One that no attempt of the status names was created for a
        decision that was not stored and that the stored one replaced (docs/architecture.md): it is stopped."""
        recorded = {resources.pod_name(subject.name, tr.id, a.number) for tr in status.taskRuns for a in tr.attempts}
        for name, pod in list(subject.pods.items()):
            if name not in recorded and not resources.pod_ended(pod):
                log.warning("execution %s/%s ended: stopping pod %s, which no attempt of its status records",
                            subject.namespace, subject.name, name)  # fmt: skip
                self.kube.delete_pod(subject.namespace, name)

    def _start(self, execution: dict[str, Any], now: datetime) -> Outcome:
        """A new execution: start it, queue it, or end it at once with the reason it cannot start."""
        namespace, flow_name = execution["metadata"]["namespace"], resources.flow_ref(execution)
        resource = self.kube.get("flows", namespace, flow_name) if flow_name else None
        revision = (resource or {}).get("metadata", {}).get("generation")
        loaded = resources.read_flow(resource)
        problem = resources.spec_problem(execution)
        if problem is not None:
            execution = resources.without_spec_data(execution)  # described without what cannot be read
        depth, root = self._lineage(execution)  # from the parents' stored statuses, not the annotation
        started = self._started_by(namespace, root) - 1 if depth > 0 else 0
        cannot = start.start_check(flow_name, loaded, namespace, depth, spec_problem=problem, root=root,
                                   started=started, max_started=self.config.max_executions_per_root)  # fmt: skip
        actions: Sequence[executor.Action] = []
        if cannot is not None or not isinstance(loaded, Flow):
            placeholder = Flow.model_construct(id=flow_name or "unknown", namespace=namespace, tasks=[])
            subject = Subject(execution, resources.run_info(execution, placeholder, revision, now), None, flow_name,
                              None, revision, now)  # fmt: skip
            status = executor.failed_start(subject.run, cannot.message if cannot else "cannot start", now)
        else:
            flow = loaded
            flow_doc = flow_snapshot(flow)  # without triggers: a webhook key must not reach the Execution
            subject = Subject(execution, resources.run_info(execution, flow, revision, now), flow, flow_name,
                              flow_doc, revision, now)  # fmt: skip
            has_place = flow.concurrency is None or self._may_run(execution, flow.concurrency.limit)
            let_in = start.admission(flow_name, flow, has_place)
            if let_in.refused is not None:
                status = executor.failed_start(subject.run, let_in.reason or "refused", now, let_in.refused)
            else:
                inputs = (execution.get("spec") or {}).get("inputs") or {}
                seed = replayed(self.kube, execution, flow, subject.run)
                decision = executor.advance(flow, subject.run, None, [executor.Start(at=now, inputs=inputs, seed=seed,
                                                                              queued=let_in.queued)], now)  # fmt: skip
                status, actions = decision.status, decision.actions
        with self._fine_step(subject.run, status.changes[-1].n):
            outcome = Outcome()
            outcome.body = self._commit(subject, status, None)
            outcome.events.append(notices.started(status, subject.run, flow_name))
            outcome.pods = self._create(subject, outcome.body, actions)
        return outcome

    def _finished(self, subject: Subject, status: ExecutionStatus) -> Outcome:
        """A finished execution: its span watermark stored once confirmed, then clean-up and TTL."""
        outcome = Outcome(finished=True)
        outcome.body = self._store_watermark(subject, status)
        if status.triggered == resources.TRIGGERS_PENDING and subject.flow is not None:  # once, after the end
            fired = flow_triggers.fire(self.kube, subject.execution, subject.flow, subject.run, status)
            outcome.body = fired.body
            outcome.events += [("Normal", "Triggered", f"started {name}") for name in fired.started]
            outcome.events += [("Warning", "TriggerFailed", problem) for problem in fired.problems]
        self._cleanup(subject, status)
        ttl = self.config.execution_ttl_seconds
        if ttl is not None and status.endDate is not None:
            expires = status.endDate + timedelta(seconds=ttl)
            if expires <= subject.now:
                self.kube.delete("executions", subject.namespace, subject.name)
            else:
                outcome.wake_at = expires
        return outcome

    def _exporting(self) -> bool:
        return self.exports is not None

    def _commit(self, subject: Subject, status: ExecutionStatus, before: ExecutionStatus | None) -> dict[str, Any]:
        """Store the status, carrying the span watermark this process saw confirmed (never more: the PUT's
        resourceVersion makes sure the watermark it raises is the one that was read), and hand the stored
        status to the export thread. Once stored, the metrics of the changes since `before` (the status that
        was read) are recorded: the commit is their one moment, so a restarted operator never records them
        again."""
        if self.exports is None:  # nothing is sent, so nothing can be lost; switching on later sends no old spans
            status = status.model_copy(update={"exported": span_export.last_change(status)})
        else:
            status = status.model_copy(update={"exported": self.exports.carried(subject.run.uid, status)})
        status = compaction.compact(subject.flow, status)  # what the stored watermark says is exported
        body = dict(subject.execution)
        body["status"] = resources.status_body(subject.run, status, subject.flow_doc, subject.revision,
                                               self.config.traces)  # fmt: skip
        resources.check_status_size(body["status"], subject.name)
        stored = self.kube.replace_status("executions", body)
        self._record(measures.committed(subject.run, subject.flow, before, status, traced=self._exporting(),
                                        run_ids=self.config.metrics_run_ids))  # fmt: skip
        if self.exports is not None:
            self.exports.committed((subject.namespace, subject.name), subject.run, subject.flow, status)
        return stored

    def _store_watermark(self, subject: Subject, status: ExecutionStatus) -> dict[str, Any] | None:
        """With nothing else to commit: store the confirmed span watermark with a patch of its own when it is
        due (the execution finished, or no commit carried it for a while), else hand the status read to the
        export thread (after a restart, its spans above the stored watermark are sent from it). The patch
        moves the watermark only from the value read (else 422: Conflict, read again)."""
        if self.exports is None:
            return None
        key = (subject.namespace, subject.name)
        target = self.exports.store_alone(subject.run.uid, status)
        if target is None:
            self.exports.committed(key, subject.run, subject.flow, status)
            return None
        patch = span_export.watermark_patch(status.exported, target)
        stored = self.kube.patch_status("executions", subject.namespace, subject.name, patch)
        self.exports.committed(key, subject.run, subject.flow, status.model_copy(update={"exported": target}))
        return stored

    def _create(
        self, subject: Subject, body: dict[str, Any], actions: Sequence[executor.Action]
    ) -> list[dict[str, Any]]:
        """Create the pods and child executions the actions ask for (a repeated create is a harmless 409); the
        pods created, as the API server answered."""
        created: list[dict[str, Any]] = []
        for action in actions:
            if isinstance(action, executor.RunTask):
                pod_body = resources.build_pod(self.config, body, subject.run, subject.flow_name, action)
                if (pod := self.kube.create_pod(pod_body)) is not None:
                    created.append(pod_essence(pod))
            elif isinstance(action, executor.StartSubflow):
                flow_name = (
                    self.view.flow_resource_for(subject.namespace, action.namespace, action.flowId) or action.flowId
                )
                root = self._lineage(body)[1]
                self.kube.create("executions", resources.child_execution(body, action, flow_name, root))
        return created

    def _lineage(self, execution: dict[str, Any]) -> tuple[int, str]:
        """How deep in a chain of subflows the execution is, and the name of the chain's root, from the
        parents' stored statuses (see `resources.is_parent_of`), never from an annotation."""
        depth, current = 0, execution
        namespace = execution["metadata"]["namespace"]
        while depth <= start.MAX_SUBFLOW_DEPTH and (ref := resources.parent_reference(current)) is not None:
            name = ref.get("name") or ""
            parent = self.view.executions.get((namespace, name)) or self.kube.get("executions", namespace, name)
            if not resources.is_parent_of(parent, current):
                break
            depth, current = depth + 1, parent  # type: ignore[assignment]
        return depth, current["metadata"]["name"]

    def _started_by(self, namespace: str, root: str) -> int:
        """Executions in the view labelled with this root (the child being started included)."""
        label = resources.label_value(root)
        return sum(
            1
            for (ns, _), body in list(self.view.executions.items())
            if ns == namespace and (body["metadata"].get("labels") or {}).get(resources.LABEL_ROOT) == label
        )

    def _cleanup(self, subject: Subject, status: ExecutionStatus) -> None:
        policy = self.config.pod_cleanup
        if policy == PodCleanup.KEEP or (policy == PodCleanup.ON_SUCCESS and status.state != State.SUCCESS):
            return
        for pod_name in list(subject.pods):
            self.kube.delete_pod(subject.namespace, pod_name)


# --- kopf wiring ---------------------------------------------------------------------------------------


class Service(Protocol):
    """A server started inside the operator process (the HTTP API), stopped at shutdown."""

    async def stop(self) -> None: ...


Lookup = Callable[[str, str], "dict[str, Any] | None"]  # an execution in the view, by namespace and name
StartService = Callable[[OperatorConfig, Kube, Lookup], Awaitable[Service]]

OPERATOR: Operator | None = None
START_API: StartService | None = None  # given by the CLI, which wires the API in (kube does not import it)
API: Service | None = None
WATCHES: list[Watch] = []


def _operator() -> Operator:
    assert OPERATOR is not None, "the operator is configured at start-up"
    return OPERATOR


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    global OPERATOR
    build_validators()
    config = OperatorConfig.from_env()
    load_client_config()
    exporter = SpanRecordExporter.from_env(default_service="flowpods", timeout=EXPORT_TIMEOUT)
    fine = None
    if config.traces == TraceLevel.FINE:
        fine = FineTracer(tracer_provider_from_env("flowpods"))
    metrics = metrics_from_env(default_service="flowpods")
    observe = None
    if metrics is not None:
        record = metrics.record

        def observe(method: str, code: int, seconds: float) -> None:
            record([measures.k8s_request(method, code, seconds)])

    # every thread that calls the client is one of the reconcile threads (the API's handlers run there too)
    # each reconcile thread may store a status in a second one while it creates pods (Operator._commit_and_create)
    kube = Kube(observe=observe, pool_size=2 * config.reconcile_threads)
    OPERATOR = Operator(config, kube, exporter, fine, metrics)
    settings.persistence.finalizer = "flowpods.io/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="flowpods.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="flowpods.io", key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = resources.REPORTING_COMPONENT
    settings.posting.event_name_prefix = resources.EVENT_NAME_PREFIX
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.execution.max_workers = 8
    log.info("flowpods operator: %s", config.model_dump(mode="json"))
    settle_heap()


@kopf.on.startup()
async def start_api(**_: Any) -> None:
    """The HTTP API on its own port, in kopf's event loop; FLOWPODS_API_PORT=0 disables it."""
    global API
    if OPERATOR is None:
        raise kopf.TemporaryError("waiting for the operator to be configured", delay=0.1)
    if OPERATOR.config.api_port == 0 or API is not None or START_API is None:
        return
    view = OPERATOR.view.executions
    API = await START_API(OPERATOR.config, OPERATOR.kube, lambda ns, name: view.get((ns, name)))


@kopf.on.cleanup()
async def stop_api(**_: Any) -> None:
    global API
    if API is not None:
        await API.stop()
        API = None


@kopf.on.startup()
async def start_threads(**_: Any) -> None:
    """The export thread and the watches of Executions and pods, which hand their news to this (kopf's) event loop."""
    if OPERATOR is None:
        raise kopf.TemporaryError("waiting for the operator to be configured", delay=0.1)
    OPERATOR.start(asyncio.get_running_loop())
    if not WATCHES:
        namespaces = OPERATOR.config.namespaces
        kube = Kube(pool_size=2 * max(len(namespaces), 1))  # each watch holds a connection of its own
        WATCHES.append(Watch(kube, watches.EXECUTIONS, namespaces, OPERATOR.saw_from_thread(OPERATOR.saw_execution)))
        WATCHES.append(Watch(kube, watches.PODS, namespaces, OPERATOR.saw_from_thread(OPERATOR.saw_pod)))
        for watch in WATCHES:
            watch.start()


@kopf.on.cleanup()
def shutdown(**_: Any) -> None:
    for watch in WATCHES:
        watch.stop()
    if OPERATOR is not None:
        OPERATOR.stop()
    if OPERATOR is not None and OPERATOR.exporter is not None:
        OPERATOR.exporter.shutdown()
    if OPERATOR is not None and OPERATOR.fine is not None:
        OPERATOR.fine.provider.shutdown()
    if OPERATOR is not None and OPERATOR.metrics is not None:
        OPERATOR.metrics.shutdown()


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


def settle_heap() -> None:
    """Move what the start-up built (modules, classes, the clients, pydantic's validators: most of the heap) out
    of the cyclic collector's reach, and collect the young generation less often: the collector was a fifth of
    the operator's CPU, each full collection walking all of that heap."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _operate(config: OperatorConfig) -> None:
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(config.reconcile_threads, thread_name_prefix="reconcile")
    )
    await kopf.operator(
        standalone=True,
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
        # port 0 means no endpoint: kopf would read it as "unset" and bind port 80
        liveness_endpoint=f"http://0.0.0.0:{config.health_port}/healthz" if config.health_port else None,
    )


def run(config: OperatorConfig | None = None, api: StartService | None = None) -> int:
    """`flowpods operator`: run until stopped, serving `api` (if given) in the same event loop; 2 at once when
    the settings would lose the workers' spans."""
    global START_API
    if config is None:
        problem = loopback_worker_endpoint(os.environ)
        if problem:
            print(f"flowpods operator: refusing to start: {problem}", file=sys.stderr)
            return 2
        try:
            config = OperatorConfig.from_env()
        except ValidationError as exc:
            print(f"flowpods operator: refusing to start: {invalid_settings(exc)} (see docs/operations.md)",
                  file=sys.stderr)  # fmt: skip
            return 2
    START_API = api
    sys.setrecursionlimit(max(sys.getrecursionlimit(), RECURSION_LIMIT))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # one line per watch event is noise
    asyncio.run(_operate(config))
    return 0
