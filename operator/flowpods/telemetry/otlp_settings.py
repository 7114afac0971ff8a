"""The standard OTEL_* variables and flowpods' own tracing switch, read without the OpenTelemetry SDK: a
`flowpods run` that exports nothing does not import it (~20 ms of its start)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from enum import StrEnum
from urllib.parse import unquote

log = logging.getLogger(__name__)

TRACES_ENV = "FLOWPODS_TRACES"
DEFAULT_SERVICE = "flowpods"
PROTOCOLS = ("grpc", "http/protobuf")
DEFAULT_PROTOCOL = "http/protobuf"
"""The OTLP exporter specification's default. gRPC is there when asked for; its library (grpcio) alone took
13 MB of the operator's memory and 80 ms more to import in each worker pod (docs/benchmarks.md)."""


class TraceLevel(StrEnum):
    """Kestra's tracing switch: DISABLED keeps API spans only, FINE adds the operator's internal steps."""

    DEFAULT = "DEFAULT"
    DISABLED = "DISABLED"
    FINE = "FINE"


def trace_level(environ: Mapping[str, str] = os.environ) -> TraceLevel:
    """FLOWPODS_TRACES, case-insensitive; a typo must not switch tracing off, so unknown means DEFAULT."""
    raw = (environ.get(TRACES_ENV) or "").strip()
    if not raw:
        return TraceLevel.DEFAULT
    try:
        return TraceLevel(raw.upper())
    except ValueError:
        log.warning("%s=%r is not one of %s; using DEFAULT", TRACES_ENV, raw, ", ".join(TraceLevel))
        return TraceLevel.DEFAULT


# --- configuration (pure) ------------------------------------------------------------------------------


def otlp_protocol(environ: Mapping[str, str] = os.environ, signal: str = "traces") -> str:
    """The OTLP protocol for a signal (traces, metrics): the signal-specific variable wins, else the generic
    one, else the default."""
    raw = environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    protocol = (raw or DEFAULT_PROTOCOL).strip().lower()
    if protocol not in PROTOCOLS:
        supported = " or ".join(PROTOCOLS)
        raise ValueError(f"unsupported OTLP protocol {raw!r}: flowpods exports {signal} over {supported}")
    return protocol


def otlp_traces_endpoint(environ: Mapping[str, str] = os.environ, protocol: str = DEFAULT_PROTOCOL) -> str | None:
    """The traces endpoint, or None. Over HTTP a generic endpoint gets `/v1/traces` appended (OTLP spec)."""
    specific = (environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or "").strip()
    if specific:
        return specific
    generic = (environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "").strip()
    if not generic:
        return None
    if protocol == "http/protobuf":
        return generic.rstrip("/") + "/v1/traces"
    return generic


def resource_attributes(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """OTEL_RESOURCE_ATTRIBUTES (`k=v,k2=v2`, values percent-encoded) as a dict; bad pairs are skipped."""
    attributes: dict[str, str] = {}
    for pair in (environ.get("OTEL_RESOURCE_ATTRIBUTES") or "").split(","):
        key, sep, value = pair.partition("=")
        if sep and key.strip():
            attributes[key.strip()] = unquote(value.strip())
    return attributes
