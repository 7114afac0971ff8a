"""kopf's change-detection essence is built for Flows only (kube/essence.py): for an Execution nested 9,990
levels deep, kopf's own copy took over a second of the event loop per watch event."""

from __future__ import annotations

import json
import sys

import kopf

from flowpods.kube.essence import ChangeHandledOnly
from flowpods.kube.operator import RECURSION_LIMIT

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
