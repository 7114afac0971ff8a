"""What kopf keeps per watch event: a diff-base only for the resource that has change handlers.

kopf builds a "diff-base" (a deep copy of the body without its status and system fields) for every
event of every watched resource, to tell what changed since the last handled version. Only Flows have
change handlers (`validate_flow`); pods and Executions have event handlers only, which never read a
diff. Building it for them copied every pod and Execution body on every event (9 % of the operator's
CPU under the bench's throughput phase, docs/benchmarks.md), so for them the essence is empty: kopf
sees no change, which is what an event handler needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import kopf

DIFFED_KINDS = frozenset({"Flow"})  # the kinds with on.create/on.update/on.resume handlers


class ChangeHandledOnly(kopf.AnnotationsDiffBaseStorage):
    """kopf's annotation diff-base, for the kinds in DIFFED_KINDS only."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> Any:
        if body.get("kind") not in DIFFED_KINDS:
            return cast(Any, {})
        return super().build(body=body, extra_fields=extra_fields)

    def fetch(self, *, body: kopf.Body) -> Any:
        if body.get("kind") not in DIFFED_KINDS:
            return cast(Any, {})
        return super().fetch(body=body)
