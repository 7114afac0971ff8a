"""The metrics shell: the SDK's data served to Prometheus in OpenMetrics with exemplars, and sent over OTLP."""

from __future__ import annotations

import http.server
import socket
import threading
import urllib.request
from pathlib import Path

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from flowpods.core import metrics as facts
from flowpods.core.metrics import Measurement
from flowpods.telemetry.metrics import MetricsSettings, metrics_from_env, prometheus_name
from tests.dashboard import dashboard_metric_names, metric_names

TRACE, SPAN = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, accept: str) -> str:
    request = urllib.request.Request(url, headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


@pytest.fixture
def served():
    port = free_port()
    metrics = metrics_from_env(
        {
            "OTEL_METRICS_EXPORTER": "prometheus",
            "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
            "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
        }
    )
    assert metrics is not None
    yield metrics, f"http://127.0.0.1:{port}/metrics"
    metrics.shutdown()


def test_openmetrics_scrapes_carry_the_trace_id_of_a_duration_sample(served):
    metrics, url = served
    metrics.record(
        [
            Measurement(
                facts.RUN_DURATION,
                1.3,
                {"cicd.pipeline.name": "f", "cicd.pipeline.run.state": "executing"},
                (TRACE, SPAN),
            )
        ]
    )
    text = get(url, "application/openmetrics-text; version=1.0.0")
    bucket = next(line for line in text.splitlines() if 'le="2.5"' in line)
    assert bucket.startswith('cicd_pipeline_run_duration_seconds_bucket{cicd_pipeline_name="f"')
    assert f'# {{span_id="{SPAN}",trace_id="{TRACE}"}} 1.3' in bucket
    # a later scrape still shows it (until a newer sample in that bucket replaces it)
    assert f'trace_id="{TRACE}"' in get(url, "application/openmetrics-text; version=1.0.0")
    # the classic text format has the same series, without exemplars
    classic = get(url, "text/plain")
    assert (
        'cicd_pipeline_run_duration_seconds_count{cicd_pipeline_name="f",cicd_pipeline_run_state="executing"} 1.0'
        in (classic)
    )
    assert "trace_id" not in classic


def test_observed_metrics_are_read_from_their_source_at_each_scrape(served):
    metrics, url = served
    waiting = {"n": 2}
    metrics.observe(
        lambda: [Measurement(facts.WAITING, waiting["n"], {"cicd.pipeline.name": "f", "flowpods.state": "QUEUED"})]
    )
    assert 'flowpods_executions_waiting{cicd_pipeline_name="f",flowpods_state="QUEUED"} 2.0' in get(url, "text/plain")
    waiting["n"] = 0
    assert 'flowpods_executions_waiting{cicd_pipeline_name="f",flowpods_state="QUEUED"} 0.0' in get(url, "text/plain")


def test_counters_get_total_and_unit_annotations_are_dropped(served):
    metrics, url = served
    metrics.record(facts.exported(3, True))
    assert 'flowpods_spans_exported_total{flowpods_result="success"} 3.0' in get(url, "text/plain")
    assert prometheus_name("cicd.pipeline.run.active", "{run}") == "cicd_pipeline_run_active"
    assert prometheus_name("flowpods.reconcile.duration", "s") == "flowpods_reconcile_duration_seconds"


class _Receiver(http.server.BaseHTTPRequestHandler):
    bodies: list[tuple[str, bytes]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.bodies.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_otlp_over_http_sends_the_metrics_with_their_exemplars():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Receiver.bodies.clear()
    try:
        metrics = metrics_from_env(
            {
                "OTEL_METRICS_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
            }
        )
        assert metrics is not None
        metrics.record([Measurement(facts.TASKRUN_DURATION, 0.4, {"cicd.pipeline.name": "f"}, (TRACE, SPAN))])
        metrics.shutdown()  # flushes
    finally:
        server.shutdown()
    paths = {path for path, _ in _Receiver.bodies}
    assert paths == {"/v1/metrics"}
    sent = {}
    for _, body in _Receiver.bodies:
        request = ExportMetricsServiceRequest.FromString(body)
        for resource in request.resource_metrics:
            for scope in resource.scope_metrics:
                sent.update({metric.name: metric for metric in scope.metrics})
    point = sent[facts.TASKRUN_DURATION].histogram.data_points[0]
    assert point.count == 1 and sent[facts.TASKRUN_DURATION].unit == "s"
    assert point.exemplars[0].trace_id.hex() == TRACE


def test_settings_follow_the_standard_variables():
    default = MetricsSettings.from_env({})
    assert default.prometheus and default.prometheus_port == 9464 and default.otlp_endpoint is None
    by_default = MetricsSettings.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert (by_default.otlp_protocol, by_default.otlp_endpoint) == ("http/protobuf", "http://collector:4318/v1/metrics")
    grpc = MetricsSettings.from_env(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    )
    assert grpc.otlp_endpoint == "http://collector:4317"
    http_ = MetricsSettings.from_env(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    )
    assert http_.otlp_endpoint == "http://c:4318/v1/metrics"
    none = MetricsSettings.from_env({"OTEL_METRICS_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"})
    assert not none.prometheus and none.otlp_endpoint is None
    assert metrics_from_env({"OTEL_METRICS_EXPORTER": "none"}) is None


def exported_names() -> set[str]:
    """The Prometheus series names the instruments produce."""
    names = set()
    for spec in facts.INSTRUMENTS:
        base = prometheus_name(spec.name, spec.unit)
        if spec.kind == "histogram":
            names |= {base + "_bucket", base + "_count", base + "_sum"}
        elif spec.kind == "counter":
            names.add(base + "_total")
        else:
            names.add(base)
    return names


def test_every_dashboard_query_names_an_exported_metric():
    panels = dashboard_metric_names()
    assert panels
    for title, names in panels.items():
        assert names and names <= exported_names(), (title, names - exported_names())


def test_operations_doc_lists_every_metric_and_the_cardinality_switch():
    doc = (Path(__file__).resolve().parents[3] / "docs" / "operations.md").read_text()
    for spec in facts.INSTRUMENTS:
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{spec.name}` |")), None)
        assert row is not None, f"{spec.name} is not in docs/operations.md"
        assert f"`{spec.unit}`" in row and all(f"`{a}`" in row for a in spec.attributes), row
    assert "FLOWPODS_METRICS_RUN_IDS" in doc and "OTEL_EXPORTER_PROMETHEUS_PORT" in doc


def test_promql_metric_names_skip_functions_labels_and_ranges():
    expr = 'histogram_quantile(0.95, sum by (le, x) (rate(a_bucket{y="rate(b)"}[5m]))) / on (z) c_total'
    assert metric_names(expr) == {"a_bucket", "c_total"}
