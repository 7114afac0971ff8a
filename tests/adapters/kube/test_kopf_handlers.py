"""kopf handles Flows only: Executions and pods are watched by kube/watches.py. For every event of every object
it watches, kopf builds a deep copy of the object on the event loop (its change-detection "essence"): for an
Execution nested 9,990 levels deep that took over a second of the loop per event (docs/hostile-input.md), and
for every pod and Execution event it was CPU spent for nothing (docs/benchmarks.md)."""

from __future__ import annotations

import kopf

from flowpods.kube import operator  # noqa: F401 - registers the operator's handlers


def test_kopf_has_handlers_for_flows_and_nothing_else() -> None:
    registry = kopf.get_default_registry()
    handlers = [*registry._watching.get_all_handlers(), *registry._changing.get_all_handlers(),
                *registry._spawning.get_all_handlers(), *registry._indexing.get_all_handlers()]  # fmt: skip
    assert handlers
    assert {(h.selector.group, h.selector.any_name) for h in handlers if h.selector} == {("flowpods.io", "flows")}
    assert all(h.selector for h in handlers)
