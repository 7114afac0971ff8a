"""What kopf remembers of an object to detect its changes (Flows only), and what it holds of an event.

For every watch event of every object it watches, kopf builds the object's "essence" on its event loop: a deep
copy of the whole object (status included, dropped only after the copy) and a diff against the last one. It
uses them only for change handlers (on.create/update/resume), which only Flows have here. For an Execution
that is a status of 10,000 task runs, or a spec nested 10,000 levels deep, copied on the loop at each event,
and /healthz and the API (same loop) wait meanwhile: it peaked at seconds under hostile objects. Executions and
pods get an empty essence, so kopf sees no change to handle, as before, without the copy (it was also 9 % of the
operator's CPU in the bench's throughput phase, docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

import kopf

from flowpods.kube.resources import GROUP

CHANGE_HANDLED_KINDS = frozenset({"Flow"})
"""The kinds of flowpods.io the operator has change handlers for (kube/operator.py: validate_flow)."""


class ChangeHandledOnly(kopf.AnnotationsDiffBaseStorage):
    """kopf's annotation storage of the last handled configuration, building essences only where they are used."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        if not handled(body):
            return cast(kopf.BodyEssence, {})
        return super().build(body=body, extra_fields=extra_fields)

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        """Nor is the last one read back (parsed from an annotation) where no change handler would use it."""
        if not handled(body):
            return cast(kopf.BodyEssence, {})
        return super().fetch(body=body)


def handled(body: Any) -> bool:
    """Whether kopf needs the object's essence: a flowpods.io object of a kind with change handlers."""
    api_version = str(body.get("apiVersion") or "")
    return api_version.startswith(f"{GROUP}/") and body.get("kind") in CHANGE_HANDLED_KINDS


KOPF_READS = ("apiVersion", "kind")
"""What kopf reads of an object after its event handlers ran, besides the metadata: its Events and logs name it."""


def slim_event(event: Any, kept: Mapping[str, Any]) -> None:
    """Reduce the watch event's object, in place, to what the operator keeps of it (`kept`: its view's copy,
    which shares the nested parts), once the event handler has read it.

    kopf holds each object's last event in the object's worker until no event came for `idle_timeout` (5 s),
    and that decoded object is the whole pod (spec, managed fields) or Execution. With 1,000 executions
    starting, those held objects were 15 MB of the operator's memory (docs/benchmarks.md). Nothing reads them
    after the handler: kopf detected the event's causes (diff base, finalizers) before the handlers ran, its
    Events and log lines name the object by apiVersion, kind and metadata, and the handlers copy what they
    keep."""
    obj = event.get("object") if isinstance(event, Mapping) else None
    if not isinstance(obj, dict):
        return
    for key in [key for key in obj if key not in kept and key not in KOPF_READS]:
        del obj[key]
    obj.update(kept)
