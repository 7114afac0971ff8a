"""What kopf remembers of an object to detect its changes: Flows only.

For every watch event of every object it watches, kopf builds the object's "essence" on its event loop: a deep
copy of the whole object (status included, dropped only after the copy) and a diff against the last one. It
uses them only for change handlers (on.create/update/resume), which only Flows have here. For an Execution
that is a status of 10,000 task runs, or a spec nested 10,000 levels deep, copied on the loop at each event,
and /healthz and the API (same loop) wait meanwhile: it peaked at seconds under hostile objects. Executions and
pods get an empty essence, so kopf sees no change to handle, as before, without the copy (it was also 9 % of the
operator's CPU in the bench's throughput phase, docs/benchmarks.md). Since kopf watches only Flows
(kube/watches.py has the Executions and pods), this is a guard for any other kind it may be given.
"""

from __future__ import annotations

from collections.abc import Iterable
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
