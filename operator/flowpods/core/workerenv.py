"""The environment every worker gets, in a pod or as a local process: who it is for OpenTelemetry, and the
W3C context (TRACEPARENT, TRACESTATE, BAGGAGE) that makes its WORKER span a child of its TASKRUN span."""

from __future__ import annotations

from collections.abc import Mapping

from flowpods.core.executor.messages import RunTask
from flowpods.core.records import WORKER_SERVICE
from flowpods.core.status import RunInfo

TRACE_VARIABLES = ("TRACEPARENT", "TRACESTATE", "BAGGAGE")


def worker_environment(
    action: RunTask, run: RunInfo, traced: bool = True, attributes: Mapping[str, str] | None = None
) -> dict[str, str]:
    """OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES (the adapter's `attributes` first, then the CI/CD ones) and,
    when `traced`, the attempt's trace context."""
    resource = {
        **(attributes or {}),
        "cicd.pipeline.name": run.flowId,
        "cicd.pipeline.run.id": run.id,
        "cicd.pipeline.task.name": action.work.taskId,
        "cicd.pipeline.task.run.id": action.work.taskRunId,
    }
    env = {
        "OTEL_SERVICE_NAME": WORKER_SERVICE,
        "OTEL_RESOURCE_ATTRIBUTES": ",".join(f"{key}={value}" for key, value in resource.items()),
    }
    if traced:
        env["TRACEPARENT"] = action.traceparent
        if action.tracestate:
            env["TRACESTATE"] = action.tracestate
        if action.baggage:
            env["BAGGAGE"] = action.baggage
    return env
