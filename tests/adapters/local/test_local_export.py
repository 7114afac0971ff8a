"""`flowpods run` under a collector that fails: the local runner follows the operator's export protocol, and
the workers hand their spans back, so a failed export loses nothing and nothing is sent twice."""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

from flowpods.core.model import parse_flow
from flowpods.core.spans import derive_spans
from flowpods.core.status import Change
from flowpods.local.loader import FlowCatalog
from flowpods.local.runner import LocalExecution, LocalRunner
from flowpods.telemetry.otel import SpanRecordExporter
from tests.adapters.telemetry.test_otel import Collector

FLOW = {
    "id": "local", "namespace": "company.team",
    "tasks": [
        {"id": "p", "type": "Parallel", "tasks": [
            {"id": "a", "type": "Log", "message": "a"},
            {"id": "flaky", "type": "Fail", "condition": "{{ taskrun.attemptsCount < 1 }}", "errorMessage": "once",
             "retry": {"type": "constant", "maxAttempts": 2, "interval": "PT0S"}},
        ]},
        {"id": "last", "type": "Log", "message": "done"},
    ],
}  # fmt: skip


def test_a_failed_export_is_sent_again_later_and_every_span_arrives_once(collector: Collector,
                                                                         tmp_path: Path) -> None:  # fmt: skip
    """The collector answers 503 to the first change's export; from the second change on it accepts."""
    environ = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }
    exporter = SpanRecordExporter.from_env(environ, "flowpods", timeout=1.0)
    flow = parse_flow(FLOW)
    collector.status = 503
    refused: list[int] = []

    def on_change(execution: LocalExecution, change: Change) -> None:
        if change.n == 2 and not refused:
            refused.append(len(collector.requests))  # what arrived so far was refused
            collector.status = 200

    runner = LocalRunner(FlowCatalog(flows=[flow]), exporter, on_change=on_change, work_dir=tmp_path, environ=environ)
    result = runner.run(flow)
    (refused_until,) = refused
    assert refused_until >= 1, "the first export was refused"
    assert result.root.status.state.value == "SUCCESS"
    (root,) = [ex for ex in result.executions.values() if ex.run.id == result.root.run.id]
    assert root.status.exported == root.status.changes[-1].n, "the last try at the end sent what was pending"
    expected = {r.span_id for _, r in derive_spans(root.run, root.flow, root.status)}
    workers = [a for tr in root.status.taskRuns for a in tr.attempts for s in a.spans if s.name.startswith("WORKER")]
    assert len(workers) == 4, "a, flaky twice and last handed their WORKER span back"
    accepted = [span for i, (_, request) in enumerate(collector.requests) if i >= refused_until
                for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]  # fmt: skip
    received = Counter(span.span_id.hex() for span in accepted)
    assert set(received) == expected, "every span, and only these, was accepted"
    assert set(received.values()) == {1}, "none twice"
    worker_resources = [
        {a.key: a.value.string_value for a in rs.resource.attributes}
        for i, (_, request) in enumerate(collector.requests) if i >= refused_until
        for rs in request.resource_spans
        if any(s.name.startswith("WORKER - ") for ss in rs.scope_spans for s in ss.spans)
    ]  # fmt: skip
    assert worker_resources and all(r["service.name"] == "flowpods-worker" for r in worker_resources)
    assert len({s.span_id for s in result.spans}) == len(result.spans), "the tree shows each span once"
