"""The OpenTelemetry shell: configuration from env, SpanRecord <-> SDK span, and real OTLP/HTTP export."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from flowpods.core.records import SpanEvent, SpanLink, SpanRecord
from flowpods.telemetry.otel import (
    JsonLinesSpanExporter,
    SpanRecordExporter,
    exporter_from_env,
    from_readable_span,
    service_resource,
    to_readable_span,
    tracer_provider_from_env,
)
from flowpods.telemetry.otlp_settings import TraceLevel, otlp_traces_endpoint, resource_attributes, trace_level
from flowpods.telemetry.span_file import read_span_file

T0 = datetime(2026, 11, 24, 22, 0, 0, 123456, tzinfo=UTC)


def record(name: str = "RUN hello", **fields: object) -> SpanRecord:
    data: dict[str, object] = {
        "name": name,
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": "b7ad6b7169203331",
        "start": T0,
        "end": T0 + timedelta(seconds=2),
    }
    data.update(fields)
    return SpanRecord.model_validate(data)


# --- a real OTLP/HTTP collector on 127.0.0.1 -------------------------------------------------------------


@dataclass
class Collector:
    endpoint: str
    requests: list[tuple[str, ExportTraceServiceRequest]] = field(default_factory=list)
    status: int = 200

    def spans(self) -> list[tuple[dict[str, object], object]]:
        """(resource attributes, span) for every span received."""
        found = []
        for _, request in self.requests:
            for resource_spans in request.resource_spans:
                attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    found.extend((attrs, span) for span in scope_spans.spans)
        return found


@pytest.fixture
def collector() -> Iterator[Collector]:
    state = Collector(endpoint="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            state.requests.append((self.path, request))
            payload = ExportTraceServiceResponse().SerializeToString()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


# --- FLOWPODS_TRACES -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, TraceLevel.DEFAULT), ("disabled", TraceLevel.DISABLED), (" Fine ", TraceLevel.FINE),
     ("DEFAULT", TraceLevel.DEFAULT)],
)  # fmt: skip
def test_trace_level_is_case_insensitive(value: str | None, expected: TraceLevel) -> None:
    assert trace_level({} if value is None else {"FLOWPODS_TRACES": value}) == expected


def test_unknown_trace_level_is_default_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="flowpods.telemetry.otel"):
        assert trace_level({"FLOWPODS_TRACES": "verbose"}) == TraceLevel.DEFAULT
    assert "verbose" in caplog.text


# --- exporter configuration -----------------------------------------------------------------------------


def test_no_endpoint_means_no_exporter() -> None:
    assert exporter_from_env({}) is None
    empty = {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": ""}
    assert exporter_from_env(empty) is None
    assert SpanRecordExporter.from_env({}) is None


def test_http_protobuf_is_the_default_as_opentelemetry_specifies() -> None:
    exporter = exporter_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"})
    assert isinstance(exporter, HttpExporter)
    assert exporter._endpoint == "http://jaeger:4318/v1/traces"


def test_grpc_when_asked_and_its_http_scheme_is_insecure() -> None:
    over_grpc = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    exporter = exporter_from_env({**over_grpc, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4317"})
    assert isinstance(exporter, GrpcExporter)
    assert exporter._insecure is True
    secure = exporter_from_env({**over_grpc, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://collector.example:4317"})
    assert isinstance(secure, GrpcExporter)
    assert secure._insecure is False


def test_http_protobuf_appends_the_traces_path_to_a_generic_endpoint_only() -> None:
    generic = {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318/"}
    exporter = exporter_from_env(generic)
    assert isinstance(exporter, HttpExporter)
    assert exporter._endpoint == "http://jaeger:4318/v1/traces"
    specific = {**generic, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://other:4318/custom"}
    assert otlp_traces_endpoint(specific, "http/protobuf") == "http://other:4318/custom"
    # the signal-specific protocol wins over the generic one
    mixed = {**generic, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}
    assert isinstance(exporter_from_env(mixed), GrpcExporter)


def test_unknown_protocol_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"unsupported OTLP protocol 'http/json'.*grpc or http/protobuf"):
        exporter_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})


def test_resource_attributes_are_decoded_and_service_name_wins() -> None:
    environ = {"OTEL_RESOURCE_ATTRIBUTES": "k8s.pod.name=pod-1, cicd.pipeline.name=a%20b,bad,service.name=x"}
    assert resource_attributes(environ) == {"k8s.pod.name": "pod-1", "cicd.pipeline.name": "a b", "service.name": "x"}
    resource = service_resource("flowpods-worker", environ)
    assert resource.attributes["service.name"] == "flowpods-worker"
    assert resource.attributes["k8s.pod.name"] == "pod-1"


# --- SpanRecord <-> ReadableSpan ------------------------------------------------------------------------


def test_round_trip_keeps_ids_times_attributes_events_and_status() -> None:
    original = record(
        name="GET",
        parent_span_id="00f067aa0ba902b7",
        kind="CLIENT",
        attributes={"http.response.status_code": 503, "url.full": "http://x/", "tags": ["a", "b"], "ok": False},
        events=[SpanEvent(name="pod scheduled", time=T0 + timedelta(milliseconds=5), attributes={"node": "n1"})],
        status="ERROR",
        status_message="503 Service Unavailable",
        service="flowpods-worker",
        sampled=False,
    )
    span = to_readable_span(original, service_resource("flowpods-worker", {}))
    assert span.context is not None and span.parent is not None
    assert span.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert span.context.span_id == 0xB7AD6B7169203331
    assert span.parent.span_id == 0x00F067AA0BA902B7 and span.parent.is_remote
    assert not span.context.trace_flags.sampled
    assert span.start_time == 1795557600123456000
    assert from_readable_span(span) == original


def test_links_reach_the_sdk_span_and_round_trip() -> None:
    link = SpanLink(trace_id="4bf92f3577b34da6a3ce929d0e0e4736", span_id="00f067aa0ba902b7",
                    attributes={"flowpods.link": "triggered-by"})  # fmt: skip
    span = to_readable_span(record(links=[link]), service_resource("flowpods", {}))
    (sdk_link,) = span.links
    assert sdk_link.context.trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736
    assert sdk_link.context.span_id == 0x00F067AA0BA902B7 and sdk_link.context.trace_flags.sampled
    assert dict(sdk_link.attributes or {}) == {"flowpods.link": "triggered-by"}
    assert from_readable_span(span).links == [link]


def test_unserialisable_attributes_become_text_and_none_is_dropped() -> None:
    span = to_readable_span(record(attributes={"changes": {"a": 1}, "gone": None, "mixed": [1, "x"]}),
                            service_resource("s", {}))  # fmt: skip
    assert span.attributes == {"changes": '{"a": 1}', "mixed": ("1", "x")}
    assert span.parent is None


@given(
    trace_id=st.integers(1, 2**128 - 1),
    span_id=st.integers(1, 2**64 - 1),
    start=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    micros=st.integers(0, 10**10),
)
def test_round_trip_any_ids_and_times(trace_id: int, span_id: int, start: datetime, micros: int) -> None:
    original = record(
        trace_id=f"{trace_id:032x}", span_id=f"{span_id:016x}", start=start,
        end=start + timedelta(microseconds=micros), service="svc",
    )  # fmt: skip
    assert from_readable_span(to_readable_span(original, service_resource("svc", {}))) == original


# --- export over OTLP/HTTP to a real server --------------------------------------------------------------


def test_span_records_arrive_over_http_protobuf(collector: Collector) -> None:
    environ = {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_SERVICE_NAME": "flowpods-test",
        "OTEL_RESOURCE_ATTRIBUTES": "k8s.namespace.name=flows",
    }
    exporter = SpanRecordExporter.from_env(environ)
    assert exporter is not None
    run = record("RUN hello")
    taskrun = record("TASKRUN t1", span_id="1111111111111111", parent_span_id=run.span_id, status="OK")
    worker = record("WORKER - io.kestra.plugin.core.log.Log", span_id="2222222222222222",
                    parent_span_id=taskrun.span_id, service="flowpods-worker")  # fmt: skip
    unsampled = record("RUN unsampled", span_id="3333333333333333", sampled=False)
    try:
        assert exporter.export([run, taskrun, worker, unsampled]) is True
    finally:
        exporter.shutdown()
    assert {path for path, _ in collector.requests} == {"/v1/traces"}
    received = {span.name: (attrs, span) for attrs, span in collector.spans()}
    assert set(received) == {"RUN hello", "TASKRUN t1", "WORKER - io.kestra.plugin.core.log.Log"}
    attrs, span = received["TASKRUN t1"]
    assert span.trace_id.hex() == run.trace_id
    assert span.span_id.hex() == "1111111111111111"
    assert span.parent_span_id.hex() == run.span_id
    assert span.start_time_unix_nano == 1795557600123456000
    assert attrs["service.name"] == "flowpods-test" and attrs["k8s.namespace.name"] == "flows"
    worker_attrs, worker_span = received["WORKER - io.kestra.plugin.core.log.Log"]
    assert worker_attrs["service.name"] == "flowpods-worker"
    assert worker_span.parent_span_id.hex() == "1111111111111111"
    assert received["RUN hello"][1].parent_span_id == b""


def test_a_rejected_export_reports_failure(collector: Collector) -> None:
    collector.status = 400  # not retryable: the exporter gives up at once
    environ = {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint}
    exporter = SpanRecordExporter.from_env(environ)
    assert exporter is not None
    assert exporter.export([record()]) is False
    assert exporter.export([]) is True  # nothing to send is not a failure
    exporter.shutdown()


def test_tracer_provider_exports_live_spans_over_otlp_and_to_a_span_file(collector: Collector, tmp_path: Path) -> None:
    span_file = tmp_path / "spans.jsonl"
    environ = {
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_SERVICE_NAME": "from-env",
        "FLOWPODS_SPAN_FILE": str(span_file),
    }
    provider = tracer_provider_from_env("flowpods-worker", environ)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("outer"), tracer.start_as_current_span("inner"):
        pass
    provider.shutdown()
    records = {r.name: r for r in read_span_file(span_file)}
    assert set(records) == {"outer", "inner"}
    assert records["inner"].parent_span_id == records["outer"].span_id
    assert records["outer"].service == "from-env"  # OTEL_SERVICE_NAME overrides the default
    received = {span.name: span for _, span in collector.spans()}
    assert received["inner"].span_id.hex() == records["inner"].span_id


# --- JSON lines ------------------------------------------------------------------------------------------


def test_json_lines_exporter_appends_and_reader_skips_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    for name in ("first", "second"):  # two providers: two processes appending to one file
        provider = TracerProvider(resource=service_resource("svc", {}))
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(path)))
        provider.get_tracer("t").start_span(name).end()
        provider.shutdown()
    with path.open("a") as file:
        file.write('{"name": "torn", "trace_')
    records = read_span_file(path)
    assert [r.name for r in records] == ["first", "second"]
    assert all(r.service == "svc" and r.sampled for r in records)
    assert read_span_file(tmp_path / "missing.jsonl") == []
