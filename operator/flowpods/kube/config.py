"""The operator's configuration, read once from environment variables with documented defaults."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from enum import StrEnum
from urllib.parse import urlparse

from pydantic import BaseModel, Field, ValidationError, field_validator

from flowpods.telemetry.otlp_settings import DEFAULT_PROTOCOL, TraceLevel, trace_level


class PodCleanup(StrEnum):
    """When worker pods are deleted (their logs go with them)."""

    KEEP = "keep"
    ON_SUCCESS = "on-success"
    ON_COMPLETION = "on-completion"


def loopback_worker_endpoint(environ: Mapping[str, str]) -> str | None:
    """Why the operator must not start, or None: worker pods would be told to send their spans to their own
    loopback, where nothing listens, and lose them silently. That happens when the only endpoint is the
    operator's OTEL_EXPORTER_OTLP_ENDPOINT and it is a loopback address; an explicit
    FLOWPODS_WORKER_OTLP_ENDPOINT is taken as said (workers that share the host's network)."""
    if environ.get("FLOWPODS_WORKER_OTLP_ENDPOINT") or trace_level(environ) == TraceLevel.DISABLED:
        return None
    endpoint = (environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "").strip()
    host = urlparse(endpoint if "://" in endpoint else f"//{endpoint}").hostname
    if not host:
        return None
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return None
    return (
        f"OTEL_EXPORTER_OTLP_ENDPOINT is {endpoint}, a loopback address, and worker pods would get it too: inside "
        "a pod that is the pod's own loopback, so their spans would be lost. Set FLOWPODS_WORKER_OTLP_ENDPOINT to "
        "an address pods reach (a collector's or Jaeger's Service, or the node's address), or FLOWPODS_TRACES="
        "DISABLED."
    )


class OperatorConfig(BaseModel):
    namespaces: list[str] = Field(
        default_factory=list, description="FLOWPODS_NAMESPACES: comma-separated namespaces to watch; empty: all"
    )
    worker_image: str = Field(
        default="ghcr.io/flowpods/flowpods:0.1.0", description="FLOWPODS_WORKER_IMAGE: the image of worker pods"
    )
    worker_command: list[str] = Field(
        default_factory=lambda: ["flowpods", "worker"],
        description="FLOWPODS_WORKER_COMMAND: the worker's command, space-separated",
    )
    worker_service_account: str | None = Field(
        default=None, description="FLOWPODS_WORKER_SERVICE_ACCOUNT: service account of worker pods"
    )
    worker_otlp_endpoint: str | None = Field(
        default=None,
        description="FLOWPODS_WORKER_OTLP_ENDPOINT: worker pods' OTLP endpoint (default: OTEL_EXPORTER_OTLP_ENDPOINT)",
    )
    worker_otlp_protocol: str = Field(
        default=DEFAULT_PROTOCOL,
        description="FLOWPODS_WORKER_OTLP_PROTOCOL (default: OTEL_EXPORTER_OTLP_PROTOCOL or http/protobuf)",
    )
    traces: TraceLevel = Field(default=TraceLevel.DEFAULT, description="FLOWPODS_TRACES: DEFAULT, DISABLED or FINE")
    pod_cleanup: PodCleanup = Field(default=PodCleanup.KEEP, description="FLOWPODS_POD_CLEANUP")
    execution_ttl_seconds: float | None = Field(
        default=None, description="FLOWPODS_EXECUTION_TTL: seconds a finished Execution is kept; unset: forever"
    )
    api_port: int = Field(default=8080, description="FLOWPODS_API_PORT: the HTTP API's port; 0 disables the API")
    api_host: str = Field(default="0.0.0.0", description="FLOWPODS_API_HOST: the address the HTTP API binds")
    api_max_body: int = Field(
        default=1024 * 1024, gt=0, description="FLOWPODS_API_MAX_BODY: the largest request body accepted, in bytes"
    )
    jaeger_url: str | None = Field(
        default=None, description="FLOWPODS_JAEGER_URL: Jaeger's UI, for trace links in API responses"
    )
    health_port: int = Field(default=8081, description="FLOWPODS_HEALTH_PORT: kopf's liveness endpoint")
    pending_timeout_seconds: float = Field(
        default=300, gt=0, description="FLOWPODS_PENDING_TIMEOUT: seconds a task's pod may wait to start "
        "(a task's pendingTimeout overrides it)"
    )  # fmt: skip
    max_executions_per_root: int = Field(
        default=1000, ge=1, description="FLOWPODS_MAX_EXECUTIONS_PER_ROOT: subflow executions one root may start"
    )
    reconcile_threads: int = Field(
        default=16, ge=1, le=256, description="FLOWPODS_RECONCILE_THREADS: executions reconciled at once (threads, "
        "and API server connections kept open)"
    )  # fmt: skip
    metrics_run_ids: bool = Field(
        default=False,
        description="FLOWPODS_METRICS_RUN_IDS: add run and task-run ids to metric attributes (high cardinality)",
    )

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> OperatorConfig:
        def get(name: str) -> str | None:
            value = environ.get(name)
            return value if value not in (None, "") else None

        values: dict[str, object] = {
            "namespaces": get("FLOWPODS_NAMESPACES") or [],
            # the generic endpoint only: a traces endpoint already ends in /v1/traces and would be doubled
            "worker_otlp_endpoint": get("FLOWPODS_WORKER_OTLP_ENDPOINT") or get("OTEL_EXPORTER_OTLP_ENDPOINT"),
            "worker_otlp_protocol": get("FLOWPODS_WORKER_OTLP_PROTOCOL")
            or get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or DEFAULT_PROTOCOL,
            "traces": trace_level(environ),
        }
        optional = {
            "worker_image": "FLOWPODS_WORKER_IMAGE",
            "worker_service_account": "FLOWPODS_WORKER_SERVICE_ACCOUNT",
            "pod_cleanup": "FLOWPODS_POD_CLEANUP",
            "execution_ttl_seconds": "FLOWPODS_EXECUTION_TTL",
            "api_port": "FLOWPODS_API_PORT",
            "api_host": "FLOWPODS_API_HOST",
            "api_max_body": "FLOWPODS_API_MAX_BODY",
            "jaeger_url": "FLOWPODS_JAEGER_URL",
            "health_port": "FLOWPODS_HEALTH_PORT",
            "max_executions_per_root": "FLOWPODS_MAX_EXECUTIONS_PER_ROOT",
            "pending_timeout_seconds": "FLOWPODS_PENDING_TIMEOUT",
            "metrics_run_ids": "FLOWPODS_METRICS_RUN_IDS",
            "reconcile_threads": "FLOWPODS_RECONCILE_THREADS",
        }
        for field, name in optional.items():
            if get(name) is not None:
                values[field] = get(name)
        if get("FLOWPODS_WORKER_COMMAND"):
            values["worker_command"] = (get("FLOWPODS_WORKER_COMMAND") or "").split()
        return cls.model_validate(values)


def invalid_settings(exc: ValidationError) -> str:
    """The settings `OperatorConfig.from_env` refused, by their variables' names (each field's description
    starts with its variable) and without their values (an endpoint may carry credentials)."""
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        info = OperatorConfig.model_fields.get(field)
        name = (info.description or field).split(":")[0].split(" ")[0] if info else field
        problems.append(f"{name}: {error['msg']}")
    return "; ".join(problems)
