"""The export thread (kube/background_export.py): the plans of executions ready together share one request, and
each is confirmed, or retried, as it would be alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from flowpods.core import ids
from flowpods.core.records import SpanRecord
from flowpods.core.status import ExecutionStatus, RunInfo
from flowpods.kube.background_export import BackgroundExport
from flowpods.kube.span_ledger import LedgerForbidden
from tests.core.simulation import T0, Simulation, log, make_flow

FLOW = make_flow([log("a"), log("b")])


class Collector:
    """An exporter that keeps each request's spans; it raises on a request holding a span of `poison`."""

    def __init__(self, poison: str | None = None):
        self.requests: list[list[SpanRecord]] = []
        self.poison = poison
        self.lock = threading.Lock()

    def export(self, records: Sequence[SpanRecord]) -> bool:
        if any(record.trace_id == self.poison for record in records):
            raise ValueError("a span the exporter cannot encode")
        with self.lock:
            self.requests.append(list(records))
        return True


def executions(count: int) -> list[tuple[RunInfo, ExecutionStatus]]:
    runs = [RunInfo(id=f"ex-{i}", uid=f"uid-{i}", namespace="company.team", flowId="f", createdAt=T0)
            for i in range(count)]  # fmt: skip
    return [(run, Simulation(FLOW, run=run).status) for run in runs]


def exported(
    collector: Collector, runs: list[tuple[RunInfo, ExecutionStatus]], poison: str | None = None
) -> BackgroundExport:
    """Commit every execution at once, as reconciles do under load, and let the thread send them."""
    export = BackgroundExport(collector, lambda key: None, lambda measurements: None)  # type: ignore[arg-type]
    for run, status in runs:
        export.committed(("ns", run.id), run, FLOW, status)
    export.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        export.queue.confirmed(run.uid) == 0 for run, _ in runs if run.id != poison
    ):
        time.sleep(0.01)
    export.stop(5)
    return export


def test_the_plans_of_executions_ready_together_share_one_request_and_each_is_confirmed() -> None:
    runs, collector = executions(5), Collector()
    export = exported(collector, runs)
    assert len(collector.requests) == 1
    assert {span.trace_id for span in collector.requests[0]} == {ids.trace_id(run) for run, _ in runs}
    assert all(export.queue.confirmed(run.uid) == status.last_change for run, status in runs)


def test_one_execution_whose_spans_cannot_be_sent_holds_back_no_other() -> None:
    runs = executions(3)
    collector = Collector(poison=ids.trace_id(runs[1][0]))
    export = exported(collector, runs, poison=runs[1][0].id)
    sent = {span.trace_id for request in collector.requests for span in request}
    assert sent == {ids.trace_id(runs[0][0]), ids.trace_id(runs[2][0])}
    assert export.queue.confirmed(runs[0][0].uid) == runs[0][1].last_change
    assert export.queue.confirmed(runs[2][0].uid) == runs[2][1].last_change
    assert export.queue.confirmed(runs[1][0].uid) == 0  # retried later, with a back-off


class Ledger:
    """The namespace's ledger as the API server would keep it; `forbidden` answers as RBAC without the grant."""

    def __init__(self, held: dict[str, int] | None = None, forbidden: bool = False, unreadable: int = 0):
        self.held = dict(held or {})
        self.forbidden = forbidden
        self.unreadable = unreadable  # reads of namespace `ns` that fail first (its API server away)
        self.failed_at: list[float] = []
        self.reads: list[str] = []
        self.writes: list[dict[str, int]] = []

    def read(self, namespace: str) -> dict[str, int]:
        self.reads.append(namespace)
        if self.forbidden:
            raise LedgerForbidden(namespace)
        if namespace == "ns" and len(self.failed_at) < self.unreadable:
            self.failed_at.append(time.monotonic())
            raise ConnectionError("the API server is away")
        return dict(self.held) if namespace == "ns" else {}  # what it holds is namespace `ns`'s

    def write(self, namespace: str, watermarks: dict[str, int]) -> None:
        if self.forbidden:
            raise LedgerForbidden(namespace)
        self.writes.append(dict(watermarks))
        if namespace == "ns":
            self.held = dict(watermarks)


def running(count: int) -> list[tuple[RunInfo, ExecutionStatus]]:
    """Executions in the cluster's namespace `ns`, each with its first change committed (still running)."""
    return [(run.model_copy(update={"k8sNamespace": "ns"}), status) for run, status in executions(count)]


def exported_with(ledger: Ledger, runs: list[tuple[RunInfo, ExecutionStatus]]) -> tuple[BackgroundExport, list[object]]:
    woken: list[object] = []
    export = BackgroundExport(Collector(), woken.append, lambda m: None, ledger=ledger)  # type: ignore[arg-type]
    for run, status in runs:
        export.committed(("ns", run.id), run, FLOW, status)
    export.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (ledger.writes or woken):
        time.sleep(0.01)
    time.sleep(0.2)
    export.stop(5)
    return export, woken


def test_the_watermarks_one_request_confirmed_are_stored_in_one_ledger_write_read_first() -> None:
    runs = running(4)
    ledger = Ledger({"uid-gone": 7})
    export, woken = exported_with(ledger, runs)
    assert ledger.reads == ["ns"], "read once, before anything of the namespace was planned"
    assert ledger.writes == [{**{run.uid: status.last_change for run, status in runs}, "uid-gone": 7}]
    assert woken == [], "no execution writes its own status for it"
    assert all(export.store_alone(run.uid, status) is None for run, status in runs)


def test_a_watermark_the_ledger_holds_is_not_sent_again_after_a_restart() -> None:
    ((run, status),) = running(1)
    ledger = Ledger({run.uid: status.last_change})
    collector = Collector()
    export = BackgroundExport(collector, lambda key: None, lambda m: None, ledger=ledger)  # type: ignore[arg-type]
    export.committed(("ns", run.id), run, FLOW, status)
    export.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not ledger.reads:
        time.sleep(0.01)
    time.sleep(0.3)
    export.stop(5)
    assert collector.requests == [] and export.queue.confirmed(run.uid) == status.last_change
    assert export.queue.carried(run.uid, status) == status.last_change, "the next commit stores it"


def test_a_forbidden_ledger_leaves_each_execution_to_store_its_own_watermark() -> None:
    runs = running(2)
    ledger = Ledger(forbidden=True)
    _, woken = exported_with(ledger, runs)
    assert ledger.writes == [] and sorted(woken) == sorted(("ns", run.id) for run, _ in runs)  # type: ignore[type-var]


def test_a_ledger_that_cannot_be_read_is_read_again_after_a_back_off_and_its_spans_wait() -> None:
    """The API server away: the namespace's spans are not planned before its ledger is read (they might be in
    it), the thread does not wait for it meanwhile (another namespace's spans go on: the thread slept 1 s on
    each failed read before), and each read comes after a longer wait."""
    (run, status), (other, other_status) = running(2)
    other = other.model_copy(update={"k8sNamespace": "other"})
    ledger, collector = Ledger({run.uid: 1}, unreadable=2), Collector()
    export = BackgroundExport(collector, lambda key: None, lambda m: None, ledger=ledger)  # type: ignore[arg-type]
    export.committed(("ns", run.id), run, FLOW, status)
    export.committed(("other", other.id), other, FLOW, other_status)
    export.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and export.queue.confirmed(other.uid) == 0:
        time.sleep(0.01)
    other_sent = time.monotonic()
    while time.monotonic() < deadline and ledger.reads.count("ns") < 3:
        time.sleep(0.01)
    time.sleep(0.3)
    export.stop(5)
    assert ledger.reads.count("ns") == 3, "read again until it could be, then not any more"
    first, second = ledger.failed_at
    assert other_sent - first < 0.9, "the other namespace's spans did not wait for the failed read"
    assert second - first >= 0.45, "read again after 0.5 s, then 1 s"
    assert [{span.trace_id for span in request} for request in collector.requests] == [{ids.trace_id(other)}]
    assert export.queue.confirmed(run.uid) == 1, "what the ledger held is not sent again"


def test_the_thread_goes_on_after_a_bug_in_one_pass_and_tries_that_pass_again() -> None:
    """An error nothing expected (here the metrics' callback raising once) is logged and the thread goes on:
    the executions committed later are still sent (the thread used to end, and nothing more was sent), and the
    execution of the pass that failed is tried again after the back-off (it stayed in flight until a restart):
    its spans reach the collector twice, never not at all."""
    calls: list[object] = []

    def record(measurements: object) -> None:
        calls.append(measurements)
        if len(calls) == 1:
            raise RuntimeError("a bug")

    first, second = executions(2)
    collector = Collector()
    export = BackgroundExport(collector, lambda key: None, record)  # type: ignore[arg-type]
    export.committed(("ns", first[0].id), first[0], FLOW, first[1])
    export.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not calls:
        time.sleep(0.01)
    export.committed(("ns", second[0].id), second[0], FLOW, second[1])
    while time.monotonic() < deadline and 0 in (export.queue.confirmed(r.uid) for r in (first[0], second[0])):
        time.sleep(0.01)
    export.stop(5)
    assert export.queue.confirmed(second[0].uid) == second[1].last_change
    assert export.queue.confirmed(first[0].uid) == first[1].last_change, "the failed pass's execution is sent"
    sent = [{span.trace_id for span in request} for request in collector.requests]  # the retry may share a request
    assert sum(ids.trace_id(first[0]) in traces for traces in sent) == 2
    assert any(ids.trace_id(second[0]) in traces for traces in sent)
    assert export._thread is not None and not export._thread.is_alive()
