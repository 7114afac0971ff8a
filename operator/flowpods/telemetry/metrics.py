"""The metrics shell: the OpenTelemetry metrics SDK, exported over OTLP and served to Prometheus with exemplars.

The core says what to measure (`flowpods.core.metrics`); this module records it. Exemplars: a measurement of
a span is recorded inside a context holding that span's (sampled) ids, so the SDK's trace-based exemplar
filter keeps its trace id. opentelemetry-exporter-prometheus drops exemplars, so the Prometheus endpoint is
served here from the SDK's data with prometheus_client, whose OpenMetrics exposition writes them
(`# {trace_id="...",span_id="..."} value timestamp` on a bucket); a scraper that asks for the classic text
format gets the same series without exemplars.

Standard variables: OTEL_METRICS_EXPORTER (`prometheus`, `otlp`, both comma-separated, or `none`;
default `prometheus,otlp`, and otlp exports only when an OTLP endpoint is configured),
OTEL_EXPORTER_PROMETHEUS_HOST/PORT (default 0.0.0.0:9464), OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT and
_PROTOCOL, OTEL_METRIC_EXPORT_INTERVAL (read by the SDK), OTEL_METRICS_EXEMPLAR_FILTER (read by the SDK).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
    Sum,
)
from prometheus_client import start_http_server
from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Exemplar

from flowpods import __version__
from flowpods.core import metrics as facts
from flowpods.core.metrics import Measurement
from flowpods.telemetry.otel import service_resource
from flowpods.telemetry.otlp_settings import otlp_protocol

log = logging.getLogger(__name__)

DEFAULT_EXPORTERS = ("prometheus", "otlp")
DEFAULT_PROMETHEUS_PORT = 9464
# seconds: from a fast API call to an hour-long run
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)

Source = Callable[[], Iterable[Measurement]]


@dataclass(frozen=True)
class MetricsSettings:
    """Where metrics go, from the standard variables."""

    prometheus: bool
    prometheus_host: str
    prometheus_port: int
    otlp_endpoint: str | None
    otlp_protocol: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> MetricsSettings:
        raw = (environ.get("OTEL_METRICS_EXPORTER") or "").strip().lower()
        chosen = {part.strip() for part in raw.split(",") if part.strip()} if raw else set(DEFAULT_EXPORTERS)
        unknown = chosen - {"prometheus", "otlp", "none"}
        if unknown:
            log.warning("OTEL_METRICS_EXPORTER: unknown exporters %s ignored", ", ".join(sorted(unknown)))
        protocol = otlp_protocol(environ, "metrics")
        endpoint = None
        if "otlp" in chosen and "none" not in chosen:
            endpoint = (environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") or "").strip() or None
            generic = (environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "").strip()
            if endpoint is None and generic:
                endpoint = generic.rstrip("/") + "/v1/metrics" if protocol == "http/protobuf" else generic
        return cls(
            prometheus="prometheus" in chosen and "none" not in chosen,
            prometheus_host=(environ.get("OTEL_EXPORTER_PROMETHEUS_HOST") or "0.0.0.0").strip(),
            prometheus_port=int(environ.get("OTEL_EXPORTER_PROMETHEUS_PORT") or DEFAULT_PROMETHEUS_PORT),
            otlp_endpoint=endpoint,
            otlp_protocol=protocol,
        )


def exemplar_context(exemplar: tuple[str, str] | None) -> Context | None:
    """A context whose current span is the measured one (sampled), for the trace-based exemplar filter."""
    if exemplar is None:
        return None
    trace_id, span_id = exemplar
    span = trace_api.NonRecordingSpan(
        trace_api.SpanContext(
            int(trace_id, 16),
            int(span_id, 16),
            is_remote=False,
            trace_flags=trace_api.TraceFlags(trace_api.TraceFlags.SAMPLED),
        )
    )
    return trace_api.set_span_in_context(span)


class Metrics:
    """The instruments of `flowpods.core.metrics.INSTRUMENTS` on one MeterProvider."""

    def __init__(
        self, readers: Sequence[MetricReader], service: str = "flowpods", environ: Mapping[str, str] = os.environ
    ):
        self.provider = MeterProvider(metric_readers=list(readers), resource=service_resource(service, environ))
        self._sources: list[Source] = []
        self._server: Any = None
        meter = self.provider.get_meter("flowpods", __version__)
        self._instruments: dict[str, Any] = {}
        for spec in facts.INSTRUMENTS:
            if spec.observed:
                create = (
                    meter.create_observable_gauge if spec.kind == "gauge" else meter.create_observable_up_down_counter
                )
                create(spec.name, callbacks=[self._callback(spec.name)], unit=spec.unit, description=spec.description)
            elif spec.kind == "histogram":
                self._instruments[spec.name] = meter.create_histogram(
                    spec.name,
                    unit=spec.unit,
                    description=spec.description,
                    explicit_bucket_boundaries_advisory=list(BUCKETS),
                )
            elif spec.kind == "counter":
                self._instruments[spec.name] = meter.create_counter(
                    spec.name, unit=spec.unit, description=spec.description
                )
            else:
                self._instruments[spec.name] = meter.create_up_down_counter(
                    spec.name, unit=spec.unit, description=spec.description
                )

    def record(self, measurements: Iterable[Measurement]) -> None:
        """Record measurements of synchronous instruments; never raises into the caller."""
        for m in measurements:
            try:
                instrument = self._instruments[m.name]
                context = exemplar_context(m.exemplar)
                if facts.BY_NAME[m.name].kind == "histogram":
                    instrument.record(m.value, m.attributes, context=context)
                else:
                    instrument.add(m.value, m.attributes, context=context)
            except Exception:
                log.exception("recording metric %s failed", m.name)

    def observe(self, source: Source) -> None:
        """Observed instruments read their values from `source` at every collection."""
        self._sources.append(source)

    def _callback(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            observations = []
            for source in self._sources:
                try:
                    observations += [Observation(m.value, m.attributes) for m in source() if m.name == name]
                except Exception:
                    log.exception("observing %s failed", name)
            return observations

        return callback

    def serve(self, host: str, port: int, reader: PrometheusReader) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(reader))
        self._server, _thread = start_http_server(port, host, registry=registry)
        log.info("metrics for Prometheus on http://%s:%d/metrics", host, port)

    def shutdown(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self.provider.shutdown()


def metrics_from_env(environ: Mapping[str, str] = os.environ, default_service: str = "flowpods") -> Metrics | None:
    """Metrics as the standard variables configure them; None when no exporter is enabled."""
    settings = MetricsSettings.from_env(environ)
    readers: list[MetricReader] = []
    prometheus = PrometheusReader() if settings.prometheus else None
    if prometheus is not None:
        readers.append(prometheus)
    if settings.otlp_endpoint is not None:
        readers.append(PeriodicExportingMetricReader(_otlp_exporter(settings)))
    if not readers:
        return None
    metrics = Metrics(readers, environ.get("OTEL_SERVICE_NAME") or default_service, environ)
    if prometheus is not None:
        try:
            metrics.serve(settings.prometheus_host, settings.prometheus_port, prometheus)
        except OSError:
            log.exception("cannot serve metrics on %s:%d", settings.prometheus_host, settings.prometheus_port)
    return metrics


def _otlp_exporter(settings: MetricsSettings) -> Any:
    if settings.otlp_protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter

        return HttpExporter(endpoint=settings.otlp_endpoint)
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter

    endpoint = settings.otlp_endpoint or ""
    return GrpcExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))


# --- Prometheus exposition with exemplars -----------------------------------------------------------------

UNITS = {"s": "seconds", "ms": "milliseconds", "By": "bytes"}


def prometheus_name(name: str, unit: str, counter: bool = False) -> str:
    """OpenTelemetry's Prometheus naming: dots to underscores, the unit as a suffix (annotations like
    `{run}` dropped), `_total` on counters (added by the exposition)."""
    base = re.sub(r"[^a-zA-Z0-9_:]", "_", name)
    suffix = UNITS.get(unit, "" if unit.startswith("{") or unit == "1" else re.sub(r"[^a-zA-Z0-9_]", "_", unit))
    if suffix and not base.endswith("_" + suffix):
        base += "_" + suffix
    return base


def prometheus_label(key: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


class PrometheusReader(MetricReader):
    """A pull reader: each scrape collects the SDK's cumulative data and renders it as prometheus_client
    families, keeping the latest exemplar of each bucket until a newer one replaces it."""

    def __init__(self) -> None:
        super().__init__()
        self._data: MetricsData | None = None
        self._lock = threading.Lock()
        self._exemplars: dict[tuple[str, tuple[tuple[str, str], ...], float], Exemplar] = {}

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        self._data = metrics_data

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None

    def families(self) -> list[Metric]:
        with self._lock:
            self.collect()
            data, self._data = self._data, None
            return list(self._render(data)) if data is not None else []

    def _render(self, data: MetricsData) -> Iterable[Metric]:
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    yield from self._family(metric.name, metric.unit or "", metric.description or "", metric.data)

    def _family(self, name: str, unit: str, doc: str, data: Any) -> Iterable[Metric]:
        if isinstance(data, Histogram):
            family_name = prometheus_name(name, unit)
            family = Metric(family_name, doc, "histogram")
            for point in data.data_points:
                labels = {prometheus_label(k): str(v) for k, v in (point.attributes or {}).items()}
                key = tuple(sorted(labels.items()))
                bounds = [*point.explicit_bounds, float("inf")]
                for exemplar in point.exemplars:
                    if exemplar.trace_id is None or exemplar.span_id is None:
                        continue
                    bound = next(b for b in bounds if exemplar.value <= b)
                    self._exemplars[family_name, key, bound] = Exemplar(
                        {"trace_id": f"{exemplar.trace_id:032x}", "span_id": f"{exemplar.span_id:016x}"},
                        exemplar.value,
                        exemplar.time_unix_nano / 1e9,
                    )
                cumulative = 0
                for bound, count in zip(bounds, point.bucket_counts, strict=True):
                    cumulative += count
                    le = "+Inf" if bound == float("inf") else repr(float(bound))
                    family.add_sample(
                        family_name + "_bucket",
                        {**labels, "le": le},
                        cumulative,
                        exemplar=self._exemplars.get((family_name, key, bound)),
                    )
                family.add_sample(family_name + "_count", labels, point.count)
                family.add_sample(family_name + "_sum", labels, point.sum)
            yield family
        elif isinstance(data, Sum) and data.is_monotonic:
            family_name = prometheus_name(name, unit)
            family = Metric(family_name, doc, "counter")
            for number in data.data_points:
                labels = {prometheus_label(k): str(v) for k, v in (number.attributes or {}).items()}
                family.add_sample(family_name + "_total", labels, number.value)
            yield family
        elif isinstance(data, Sum | Gauge):
            family_name = prometheus_name(name, unit)
            family = Metric(family_name, doc, "gauge")
            for value in data.data_points:
                labels = {prometheus_label(k): str(v) for k, v in (value.attributes or {}).items()}
                family.add_sample(family_name, labels, value.value)
            yield family


class _Families(Collector):
    def __init__(self, reader: PrometheusReader):
        self.reader = reader

    def collect(self) -> Iterable[Metric]:
        return self.reader.families()
