"""FLOWPODS_TRACES=FINE: the operator's own steps as spans, under the EXECUTOR span of the change they commit.

DEFAULT traces describe the execution; FINE adds how the operator carried each change out (one
`operator reconcile` span, and a CLIENT span per Kubernetes call it made), for finding where the
operator itself spends time. These are live spans with random ids: unlike the execution's spans they
are not restart-safe, which is fine for a diagnostic level.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from flowpods.core import ids
from flowpods.core.status import RunInfo

C = TypeVar("C")


class FineTracer:
    def __init__(self, provider: TracerProvider):
        self.provider = provider
        self.tracer = provider.get_tracer("flowpods.kube.operator")

    @contextmanager
    def reconcile(self, run: RunInfo, change: int) -> Iterator[None]:
        """A span for the work that commits change `change`, as a child of that change's EXECUTOR span."""
        parent = SpanContext(
            trace_id=int(ids.trace_id(run), 16),
            span_id=int(ids.change_span_id(run, change), 16),
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED if ids.sampled(run) else 0),
        )
        context = trace.set_span_in_context(NonRecordingSpan(parent))
        attributes: dict[str, str | int] = {"flowpods.execution_id": run.id, "flowpods.change": change}
        with self.tracer.start_as_current_span("operator reconcile", context=context, attributes=attributes):
            yield

    def wrap(self, client: C) -> C:
        """The client with the same methods, each traced (a proxy: it stands in for the client's type)."""
        return cast(C, TracedClient(client, self.tracer))


class TracedClient:
    """Wraps the operator's Kubernetes client: each call made inside a reconcile span becomes a CLIENT span."""

    def __init__(self, client: Any, tracer: trace.Tracer):
        self._client, self._tracer = client, tracer

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._client, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            if not trace.get_current_span().is_recording():
                return target(*args, **kwargs)  # outside a reconcile span: no orphan traces
            with self._tracer.start_as_current_span(f"kubernetes {name}", kind=SpanKind.CLIENT) as span:
                span.set_attribute("flowpods.kubernetes.call", name)
                return target(*args, **kwargs)

        return call
