"""The span export off the reconcile path: one thread sends the spans of committed changes.

A reconcile commits and hands the stored status over (`committed`); it never waits for the collector. This
thread takes one execution at a time from `core.export_queue` (never two plans of one execution at once),
derives and sends its spans, and records what the exporter confirmed. Storing the watermark is the
reconcile's: a status PUT made meanwhile carries it (`carried`), else a write of its own that `wake` asks for
right after the confirmation (`linger` 0; the execution's loop is poked; no write here, so no write of this
thread ever races a commit). A collector away costs retries with a back-off here, nothing on the path.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Sequence

from flowpods.core import metrics as measures
from flowpods.core.clock import utcnow
from flowpods.core.export_queue import ExportQueue, Job
from flowpods.core.model import Flow
from flowpods.core.status import ExecutionStatus, RunInfo
from flowpods.telemetry.otel import SpanRecordExporter

log = logging.getLogger("flowpods.kube.export")


class BackgroundExport:
    """The export thread and the queue it shares with the reconcile threads (one lock around the queue)."""

    def __init__(
        self,
        exporter: SpanRecordExporter,
        wake: Callable[[Hashable], None],
        record: Callable[[Sequence[measures.Measurement]], None],
        queue: ExportQueue | None = None,
    ):
        self.exporter, self.wake, self.record = exporter, wake, record
        self.queue = queue or ExportQueue()
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
            with self._cond:
                while True:
                    if self._stopping:
                        return
                    now = utcnow()
                    due, job = self.queue.due(now), self.queue.take(now)
                    if due or job is not None:
                        break
                    moment = self.queue.next_moment()
                    self._cond.wait(None if moment is None else max((moment - now).total_seconds(), 0.001))
            for key in due:
                self.wake(key)
            if job is not None:
                self._send(job)

    def _send(self, job: Job) -> None:
        upto, ok, count = None, True, 0
        try:
            plan = job.plan()
            if plan is not None:
                count, upto = len(plan.spans), plan.upto
                ok = self.exporter.export(plan.spans) if plan.spans else True
                if plan.spans:
                    self.record(measures.exported(sum(1 for span in plan.spans if span.sampled), ok))
        except Exception:  # a bug deriving the spans must not end the thread: retried, and logged
            log.exception("exporting the spans of %s failed", job.run.id)
            ok = False
        with self._cond:
            failures = self.queue.finished(job, upto, ok, utcnow())
        if not ok and failures == 1:
            log.warning("exporting %d spans of %s/%s failed; retrying with a back-off", count,
                        job.run.k8sNamespace, job.run.id)  # fmt: skip
