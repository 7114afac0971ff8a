"""The span export off the reconcile path: one thread sends the spans of committed changes.

A reconcile commits and hands the stored status over (`committed`); it never waits for the collector. This
thread takes one execution at a time from `core.export_queue` (never two plans of one execution at once),
derives and sends its spans, and records what the exporter confirmed. Storing the watermark is the
reconcile's: a status PUT made meanwhile carries it (`carried`). With a `ledger` (kube/span_ledger.py) this
thread stores the watermarks of the running executions of each confirmed request in one write of the
namespace's ledger, never an Execution (so no write of this thread ever races a commit), and reads a ledger back
before it plans the namespace's spans. A finished execution's watermark (and, without a ledger, every one) is
stored by a write of its own that `wake` asks for right after the confirmation (`linger` 0; the execution's loop
is poked). A collector away costs retries with a back-off here, nothing on the path.

The plans of up to BATCH executions ready together go in one export request: each request has a cost of its
own (OTLP/HTTP: a `requests` call in this process, under the GIL the reconciles need), and under load many
executions are ready while one request is out. The request is accepted or failed as a whole, so each plan in
it is confirmed or retried as it was alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from datetime import datetime

from flowpods.core import metrics as measures
from flowpods.core.clock import utcnow
from flowpods.core.export import ExportPlan
from flowpods.core.export_queue import ExportQueue, Job
from flowpods.core.model import Flow
from flowpods.core.records import SpanRecord
from flowpods.core.status import ExecutionStatus, RunInfo
from flowpods.kube.span_ledger import ConfigMapLedger, LedgerForbidden
from flowpods.telemetry.otel import SpanRecordExporter

log = logging.getLogger("flowpods.kube.export")

BATCH = 64
"""Executions whose plans share one export request, at most (OpenTelemetry's batch processor sends 512 spans
a request; a change is a few spans)."""
AFTER_A_BUG = 1.0
"""Seconds the thread waits after an unexpected error before it goes on."""
GATHER = 0.1
"""Seconds the thread waits after a first ready plan for others to join its request: spans reach the collector
that much later, and the reconciles pay for a tenth as many requests under load."""


class BackgroundExport:
    """The export thread and the queue it shares with the reconcile threads (one lock around the queue)."""

    def __init__(
        self,
        exporter: SpanRecordExporter,
        wake: Callable[[Hashable], None],
        record: Callable[[Sequence[measures.Measurement]], None],
        queue: ExportQueue | None = None,
        ledger: ConfigMapLedger | None = None,
    ):
        self.exporter, self.wake, self.record, self.ledger = exporter, wake, record, ledger
        self.queue = queue or ExportQueue(ledger=ledger is not None)
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- the reconcile threads' side ---------------------------------------------------------------------

    def committed(self, key: Hashable, run: RunInfo, flow: Flow | None, status: ExecutionStatus) -> None:
        with self._cond:
            self.queue.committed(key, run, flow, status)
            if self.queue.ready():
                self._cond.notify()

    def carried(self, uid: str, status: ExecutionStatus) -> int:
        with self._cond:
            return self.queue.carried(uid, status)

    def store_alone(self, uid: str, status: ExecutionStatus) -> int | None:
        with self._cond:
            return self.queue.store_alone(uid, status, utcnow())

    def forget(self, key: Hashable) -> None:
        with self._cond:
            self.queue.forget(key)

    # -- the thread ----------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="span-export", daemon=True)
            self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop after the export in flight (a span it leaves unsent is sent by the next process)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            try:
                if not self._pass():
                    return
            except Exception:  # a bug: the thread must go on, without it no span would be sent until a restart
                log.exception("the span export thread failed; going on in %.0f s", AFTER_A_BUG)
                with self._cond:
                    self._cond.wait(AFTER_A_BUG)

    def _pass(self) -> bool:
        """One pass: wait for something to do, do it. False once stopping."""
        with self._cond:
            while True:
                if self._stopping:
                    return False
                now = utcnow()
                unread = self.queue.unread_ledgers(now)
                due, jobs = self.queue.due(now), self._take(now)
                if due or jobs or unread:
                    break
                moment = self.queue.next_moment()
                self._cond.wait(None if moment is None else max((moment - now).total_seconds(), 0.001))
        for key in due:
            self.wake(key)
        if jobs and len(jobs) < BATCH:
            time.sleep(GATHER)  # let the executions that change meanwhile share the request
            with self._cond:
                jobs += self._take(utcnow(), BATCH - len(jobs))
        if jobs:
            try:
                self._send(jobs)
            except BaseException:  # the jobs without an outcome are tried again, not left in flight
                with self._cond:
                    now = utcnow()
                    for job in jobs:
                        self.queue.abandoned(job, now)
                raise
            self._write_ledgers()
        if unread:
            self._read_ledgers(unread)
        return True

    def _read_ledgers(self, namespaces: set[str]) -> None:
        assert self.ledger is not None  # a queue without one has none to read
        for namespace in sorted(namespaces):
            try:
                watermarks = self.ledger.read(namespace)
            except LedgerForbidden:
                self._forbidden(namespace, "reading")
                continue
            except Exception as exc:
                with self._cond:
                    delay = self.queue.ledger_unreadable(namespace, utcnow())
                log.warning("reading the span watermark ledger of namespace %s failed (%s); its spans wait, read "
                            "again in %.1f s", namespace, exc, delay.total_seconds())  # fmt: skip
                continue
            with self._cond:
                self.queue.ledger_loaded(namespace, watermarks, utcnow())

    def _write_ledgers(self) -> None:
        """Store the watermarks the request confirmed, one write per namespace; a write that fails leaves each
        of its executions to store its own (the loops are poked by `due`)."""
        if self.ledger is None:
            return
        with self._cond:
            writes = self.queue.ledger_to_write(utcnow())
        for namespace, watermarks in writes.items():
            ok = False
            try:
                self.ledger.write(namespace, watermarks)
                ok = True
            except LedgerForbidden:
                self._forbidden(namespace, "writing")
            except Exception as exc:
                log.warning("writing the span watermark ledger of namespace %s failed (%s)", namespace, exc)
            with self._cond:
                self.queue.ledger_written(namespace, watermarks, ok, utcnow())

    def _forbidden(self, namespace: str, doing: str) -> None:
        """RBAC refuses the namespace's ledger: none is kept there."""
        log.warning("%s the span watermark ledger of namespace %s is forbidden: each watermark is stored in its "
                    "Execution's status by a write of its own", doing.capitalize(), namespace)  # fmt: skip
        with self._cond:
            self.queue.ledger_loaded(namespace, None, utcnow())

    def _take(self, now: datetime, most: int = BATCH) -> list[Job]:
        jobs: list[Job] = []
        while len(jobs) < most and (job := self.queue.take(now)) is not None:
            jobs.append(job)
        return jobs

    def _send(self, jobs: Sequence[Job]) -> None:
        """Plan each job, send all their spans in one request, and finish each job with its own outcome: a plan
        without spans is done whatever the request's fate, a plan that could not be derived is retried."""
        planned: list[tuple[Job, ExportPlan | None]] = []
        unplanned: list[Job] = []
        for job in jobs:
            try:
                planned.append((job, job.plan()))
            except Exception:  # a bug deriving the spans must not end the thread: retried, and logged
                log.exception("exporting the spans of %s failed", job.run.id)
                unplanned.append(job)
        sent = self._export([plan.spans if plan is not None else [] for _, plan in planned])
        with self._cond:
            now = utcnow()
            failed = [job for job in unplanned if self.queue.finished(job, None, False, now) == 1]
            for (job, plan), ok in zip(planned, sent, strict=True):
                if self.queue.finished(job, None if plan is None else plan.upto, ok, now) == 1 and not ok:
                    failed.append(job)
        if failed:
            log.warning("exporting the spans of %d execution(s) failed (%s); retrying with a back-off", len(failed),
                        ", ".join(f"{job.run.k8sNamespace}/{job.run.id}" for job in failed[:5]))  # fmt: skip

    def _export(self, groups: Sequence[Sequence[SpanRecord]]) -> list[bool]:
        """Send the groups' spans in one request; whether each group was sent (an empty one always is). If
        building the request raised (a bug, or one execution's hostile content), each group is sent alone, so
        that one execution's spans never hold back the others'."""
        spans = [span for group in groups for span in group]
        if not spans:
            return [True] * len(groups)
        try:
            ok = self.exporter.export(spans)
        except Exception:
            if len(groups) > 1:
                return [self._export([group])[0] for group in groups]
            log.exception("exporting %d spans failed", len(spans))
            ok = False
        self.record(measures.exported(sum(1 for span in spans if span.sampled), ok))
        return [ok or not group for group in groups]
