"""kopf's change-detection essence is built for Flows only (kube/essence.py): for an Execution nested 9,990
levels deep, kopf's own copy took over a second of the event loop per watch event. And the event kopf goes on
holding after a watch handler is reduced to what the view keeps of its object."""

from __future__ import annotations

import asyncio
import copy
import json
import sys
from typing import Any
from unittest import mock

import kopf

from flowpods.kube import operator as operator_module
from flowpods.kube.config import OperatorConfig
from flowpods.kube.essence import ChangeHandledOnly, slim_event
from flowpods.kube.operator import RECURSION_LIMIT, Operator
from flowpods.kube.view import View, without_managed_fields

STORAGE = ChangeHandledOnly(prefix="flowpods.io", key="last-handled-configuration")


def body(kind: str, api_version: str = "flowpods.io/v1alpha1", spec: dict | None = None) -> kopf.Body:
    return kopf.Body({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x", "labels": {"a": "b"}},
                      "spec": spec or {"id": "f"}, "status": {"taskRuns": []}})  # fmt: skip


def test_a_flow_gets_kopfs_essence_to_detect_its_changes() -> None:
    flow = body("Flow", spec={"id": "f", "tasks": [{"id": "t"}]})
    assert STORAGE.build(body=flow) == {"spec": {"id": "f", "tasks": [{"id": "t"}]}, "metadata": {"labels": {"a": "b"}}}


def test_executions_and_pods_get_none_and_are_not_copied() -> None:
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(RECURSION_LIMIT)
    try:
        deep = json.loads('{"a":' * 9990 + "1" + "}" * 9990)
        assert STORAGE.build(body=body("Execution", spec={"inputs": {"x": deep}})) == {}
        assert STORAGE.build(body=body("Pod", api_version="v1")) == {}
        assert STORAGE.build(body=body("Flow", api_version="other.io/v1")) == {}
    finally:
        sys.setrecursionlimit(before)


def test_the_last_handled_configuration_is_read_back_for_flows_only() -> None:
    annotated = {"flowpods.io/last-handled-configuration": '{"spec": {"old": true}}'}
    for kind, expected in (("Flow", {"spec": {"old": True}}), ("Execution", {})):
        found = kopf.Body({"apiVersion": "flowpods.io/v1alpha1", "kind": kind,
                           "metadata": {"name": "x", "annotations": annotated}, "spec": {"id": "f"}})  # fmt: skip
        assert STORAGE.fetch(body=found) == expected


EXECUTION = {"apiVersion": "flowpods.io/v1alpha1", "kind": "Execution",
             "metadata": {"name": "e1", "namespace": "ns", "uid": "u-e1", "resourceVersion": "5",
                          "managedFields": [{"manager": "flowpods", "fieldsV1": {"f:status": {}}}]},
             "spec": {"flowRef": {"name": "f"}}, "status": {"state": "RUNNING"}}  # fmt: skip


def handled(handler: Any, raw: dict[str, Any]) -> tuple[dict[str, Any], View]:
    """Run a watch handler of the operator as kopf does (the handler's body wraps the event's object); the
    event's object afterwards (what kopf's worker goes on holding) and the operator's view."""
    event = {"type": "MODIFIED", "object": copy.deepcopy(raw)}
    op = Operator(OperatorConfig.from_env({}), None, None)  # type: ignore[arg-type]  # (no request made)

    async def not_reconciled(key: tuple[str, str]) -> None:
        """(The poke's reconcile loop: not what these tests are about.)"""

    async def run() -> None:
        await handler(type="MODIFIED", body=kopf.Body(event["object"]), event=event)
        await asyncio.gather(*op.loops.values())

    with mock.patch.object(operator_module, "OPERATOR", op), mock.patch.object(op, "_loop", not_reconciled):
        asyncio.run(run())
    return event["object"], op.view


def test_after_an_execution_event_kopf_holds_it_without_managed_fields_shared_with_the_view() -> None:
    held, view = handled(operator_module.execution_event, EXECUTION)
    kept = view.executions[("ns", "e1")]
    assert "managedFields" not in held["metadata"]
    assert held == kept == without_managed_fields(EXECUTION)
    assert all(held[part] is kept[part] for part in ("metadata", "spec", "status"))


def test_slimming_leaves_an_event_without_an_object_alone() -> None:
    for event in ({"type": "ERROR"}, {"type": "MODIFIED", "object": "gone"}, None):
        before = copy.deepcopy(event)
        slim_event(event, {"metadata": {}})
        assert event == before
