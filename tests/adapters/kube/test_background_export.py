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
