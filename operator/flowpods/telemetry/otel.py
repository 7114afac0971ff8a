"""The OpenTelemetry shell: turn SpanRecords into SDK spans and send them where the standard env says.

The core derives spans as plain SpanRecords (chosen ids, stored times); this module is the only place that
knows the SDK. Configuration is the standard OTEL_* variables, so a pod, the operator and the local runner
are configured the same way, and with no endpoint nothing is exported and nothing fails.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from opentelemetry import context as otel_context
from opentelemetry import trace as trace_api
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from flowpods import __version__
from flowpods.core.records import SPAN_FILE_ENV, SpanEvent, SpanLink, SpanRecord
from flowpods.telemetry.otlp_settings import DEFAULT_SERVICE, otlp_protocol, otlp_traces_endpoint, resource_attributes

log = logging.getLogger(__name__)

SCOPE = InstrumentationScope("flowpods", __version__)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def service_resource(service: str, environ: Mapping[str, str] = os.environ) -> Resource:
    """A Resource for `service` with OTEL_RESOURCE_ATTRIBUTES applied (service.name wins over them)."""
    return Resource.create({**resource_attributes(environ), SERVICE_NAME: service})


def exporter_from_env(environ: Mapping[str, str] = os.environ, timeout: float | None = None) -> SpanExporter | None:
    """An OTLP span exporter as the standard variables configure it, or None when no endpoint is set.

    `timeout` (seconds) bounds one export, retries included (else OTEL_EXPORTER_OTLP_TIMEOUT, 10 s)."""
    protocol = otlp_protocol(environ)
    endpoint = otlp_traces_endpoint(environ, protocol)
    if endpoint is None:
        return None
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter(endpoint=endpoint, timeout=timeout)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

    scheme = urlparse(endpoint).scheme
    if scheme in ("http", "https"):
        insecure = scheme == "http"
    else:
        flag = environ.get("OTEL_EXPORTER_OTLP_TRACES_INSECURE") or environ.get("OTEL_EXPORTER_OTLP_INSECURE")
        insecure = (flag or "").strip().lower() == "true"
    return GrpcExporter(endpoint=endpoint, insecure=insecure, timeout=timeout)


# --- SpanRecord <-> ReadableSpan (pure) ------------------------------------------------------------------


def to_ns(when: datetime) -> int:
    """Nanoseconds since the epoch; a naive datetime is taken as UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return ((when - _EPOCH) // timedelta(microseconds=1)) * 1000


def from_ns(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1000)


def attribute_value(value: Any) -> Any:
    """An OTel-legal attribute value: scalars pass, homogeneous lists become tuples, the rest JSON text."""
    if isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple):
        items = [attribute_value(v) for v in value]
        if items and all(isinstance(v, str | bool | int | float) for v in items):
            if len({type(v) for v in items}) == 1:
                return tuple(items)
            return tuple(str(v) for v in items)
        if not items:
            return ()
    return json.dumps(value, default=str, sort_keys=True)


def otel_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes fit for the SDK: None values are dropped (OTel has no null)."""
    return {key: attribute_value(value) for key, value in attributes.items() if value is not None}


def to_readable_span(record: SpanRecord, resource: Resource) -> ReadableSpan:
    """An SDK span with the record's own ids and times, so derived spans keep deterministic ids."""
    trace_id = int(record.trace_id, 16)
    flags = TraceFlags(TraceFlags.SAMPLED if record.sampled else TraceFlags.DEFAULT)
    span_id = int(record.span_id, 16)
    context = SpanContext(trace_id=trace_id, span_id=span_id, is_remote=False, trace_flags=flags)
    parent = None
    if record.parent_span_id is not None:
        parent = SpanContext(
            trace_id=trace_id, span_id=int(record.parent_span_id, 16), is_remote=True, trace_flags=flags
        )
    status = Status(StatusCode[record.status])
    if record.status == "ERROR":
        status = Status(StatusCode.ERROR, record.status_message)
    events = [Event(e.name, otel_attributes(e.attributes), to_ns(e.time)) for e in record.events]
    links = [
        Link(
            SpanContext(
                trace_id=int(link.trace_id, 16), span_id=int(link.span_id, 16), is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED if link.sampled else TraceFlags.DEFAULT),
            ),
            otel_attributes(link.attributes),
        )
        for link in record.links
    ]  # fmt: skip
    return ReadableSpan(
        name=record.name,
        context=context,
        parent=parent,
        resource=resource,
        attributes=otel_attributes(record.attributes),
        events=events,
        links=links,
        kind=SpanKind[record.kind],
        status=status,
        start_time=to_ns(record.start),
        end_time=to_ns(record.end),
        instrumentation_scope=SCOPE,
    )


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def from_readable_span(span: ReadableSpan) -> SpanRecord:
    """The inverse of to_readable_span; the service comes from the span's resource."""
    context = span.get_span_context()
    assert context is not None, "a finished span has a context"
    start = span.start_time if span.start_time is not None else 0
    end = span.end_time if span.end_time is not None else start
    service = span.resource.attributes.get(SERVICE_NAME) if span.resource is not None else None
    return SpanRecord(
        name=span.name,
        trace_id=f"{context.trace_id:032x}",
        span_id=f"{context.span_id:016x}",
        parent_span_id=f"{span.parent.span_id:016x}" if span.parent is not None else None,
        kind=span.kind.name,
        start=from_ns(start),
        end=from_ns(end),
        attributes={k: _plain(v) for k, v in (span.attributes or {}).items()},
        events=[
            SpanEvent(
                name=e.name,
                time=from_ns(e.timestamp),
                attributes={k: _plain(v) for k, v in (e.attributes or {}).items()},
            )
            for e in span.events
        ],
        links=[
            SpanLink(
                trace_id=f"{link.context.trace_id:032x}",
                span_id=f"{link.context.span_id:016x}",
                sampled=link.context.trace_flags.sampled,
                attributes={k: _plain(v) for k, v in (link.attributes or {}).items()},
            )
            for link in span.links
        ],
        status=span.status.status_code.name,
        status_message=span.status.description,
        service=str(service) if service is not None else None,
        sampled=context.trace_flags.sampled,
    )


# --- exporters (imperative) -----------------------------------------------------------------------------


class SpanRecordExporter:
    """Sends SpanRecords through an SDK exporter, one Resource per service, synchronously."""

    def __init__(
        self,
        exporter: SpanExporter,
        default_service: str = DEFAULT_SERVICE,
        environ: Mapping[str, str] = os.environ,
    ):
        self.exporter = exporter
        self.default_service = default_service
        self._environ = dict(environ)
        self._resources: dict[str, Resource] = {}

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] = os.environ,
        default_service: str = DEFAULT_SERVICE,
        timeout: float | None = None,
    ) -> SpanRecordExporter | None:
        """None when no OTLP endpoint is configured (nothing to do, nothing to fail)."""
        exporter = exporter_from_env(environ, timeout)
        if exporter is None:
            return None
        return cls(exporter, environ.get("OTEL_SERVICE_NAME") or default_service, environ)

    def resource(self, service: str | None, attributes: Mapping[str, Any] | None = None) -> Resource:
        """The Resource of `service` (default: this process's), with a record's own resource attributes."""
        name = service or self.default_service
        key = json.dumps([name, sorted((attributes or {}).items())], default=str)
        if key not in self._resources:
            base = service_resource(name, self._environ)
            self._resources[key] = base.merge(Resource(otel_attributes(attributes))) if attributes else base
        return self._resources[key]

    def export(self, records: Sequence[SpanRecord]) -> bool:
        """Export the sampled records; True when the exporter accepted them (or there were none)."""
        spans = [to_readable_span(r, self.resource(r.service, r.resource)) for r in records if r.sampled]
        if not spans:
            return True
        try:
            return self.exporter.export(spans) == SpanExportResult.SUCCESS
        except Exception:  # an exporter must never take the caller down with it
            log.exception("exporting %d spans failed", len(spans))
            return False

    def shutdown(self) -> None:
        self.exporter.shutdown()


class JsonLinesSpanExporter(SpanExporter):
    """Appends each finished span as one SpanRecord JSON line: how worker subprocesses hand spans back."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        data = "".join(from_readable_span(s).model_dump_json() + "\n" for s in spans).encode()
        try:
            with self._lock:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, data)  # one write per batch: concurrent appenders do not interleave lines
                finally:
                    os.close(fd)
        except OSError:
            log.exception("cannot append spans to %s", self.path)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class CollectingProcessor(SpanProcessor):
    """Keeps every finished span as a SpanRecord in memory: how a worker hands its spans back with its result."""

    def __init__(self) -> None:
        self.records: list[SpanRecord] = []
        self._lock = threading.Lock()

    def on_end(self, span: ReadableSpan) -> None:
        record = from_readable_span(span)
        with self._lock:
            self.records.append(record)

    def finished(self) -> list[SpanRecord]:
        with self._lock:
            return list(self.records)


def tracer_provider_from_env(
    default_service: str, environ: Mapping[str, str] = os.environ, export_timeout: float | None = None
) -> TracerProvider:
    """A provider for live spans: OTLP (batched) when configured, a span file when FLOWPODS_SPAN_FILE is set.
    `export_timeout` bounds each OTLP export (see exporter_from_env).

    The sampler is left to the SDK, which reads OTEL_TRACES_SAMPLER itself.
    """
    service = environ.get("OTEL_SERVICE_NAME") or default_service
    provider = TracerProvider(resource=service_resource(service, environ))
    exporter = exporter_from_env(environ, export_timeout)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    span_file = environ.get(SPAN_FILE_ENV)
    if span_file:
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(span_file)))
    return provider


def span_file_provider(default_service: str, environ: Mapping[str, str] = os.environ) -> TracerProvider:
    """A provider for a worker: no OTLP exporter (its spans go back with its result), the span file when set."""
    service = environ.get("OTEL_SERVICE_NAME") or default_service
    provider = TracerProvider(resource=service_resource(service, environ))
    span_file = environ.get(SPAN_FILE_ENV)
    if span_file:
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(span_file)))
    return provider


def span_ids(span: trace_api.Span) -> tuple[str, str]:
    """(trace id, span id) as lowercase hex, the way logs and annotations print them."""
    context = span.get_span_context()
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


@contextmanager
def attached(ctx: otel_context.Context) -> Iterator[None]:
    """Make `ctx` current. `start_as_current_span(context=ctx)` alone parents the span on ctx but drops
    the rest of it (its baggage), so a span continuing a caller's context is started inside this."""
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)
